-- ARGV: server_id. Takes a registered server out of the registry: at once if free, after its
-- match if busy. Returns {'removed'}, {'leaving', match_id}, {'notfound'} or {'static'}.
local id = ARGV[1]
local sv = hgetall(svkey(id))
if sv.a == nil then return { 'notfound' } end
if sv.k == 's' then return { 'static' } end
if sv.m then
  redis.call('HSET', svkey(id), 'x', '1')
  return { 'leaving', sv.m }
end
remove_server(id, sv)
return { 'removed' }
