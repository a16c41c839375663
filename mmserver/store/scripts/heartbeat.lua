-- ARGV: server_id, address. Registers or refreshes a server.
-- Returns {server_id, address, 'free'|'busy', match_id or ''}.
local id, address = ARGV[1], ARGV[2]
local key = svkey(id)
local now = int(now_ms())
local kind = redis.call('HGET', key, 'k') or 'r'
redis.call('HSET', key, 'a', address, 'h', now, 'k', kind)
local mid = redis.call('HGET', key, 'm')
local score = (kind == 's') and '+inf' or now
if mid then
  if kind ~= 's' then redis.call('ZADD', 'mm:sv:hb', now, id) end
  return { id, address, 'busy', mid }
end
redis.call('ZADD', FREE, score, id)
return { id, address, 'free', '' }
