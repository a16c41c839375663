-- ARGV: ticket_id, token_hash, allocation_timeout_ms
local id = ARGV[1]
local t, err = authorised(id, ARGV[2])
if err then return err end
if t.s ~= 'matched' then
  return { 'conflict', 'the ticket is ' .. t.s .. ', not in a ready check' }
end
local sid = t.x
local s = load_session(sid)
-- Already past the ready check (all accepted, or none was asked for): nothing to do.
if s.st ~= 'accepting' or t.c == '1' then return view(id) end
local now = now_ms()
if now >= tonumber(s.dl) then return { 'conflict', 'the ready check has timed out' } end
-- One HSET for the ticket (t was loaded in this call: its version is the current one); the
-- view is built from t as updated here.
t.c, t.v, t.u = '1', tostring(tonumber(t.v) + 1), int(now)
redis.call('HSET', tkey(id), 'c', '1', 'v', t.v, 'u', t.u)
local accepted = redis.call('HINCRBY', skey(sid), 'n', 1)
emit('ticket.accepted', id, sid, t.m, '{}')
if accepted < tonumber(s.c) then
  publish({ id })
  return view(id, t)
end
-- Everyone accepted: the session waits for a server.
redis.call('HSET', skey(sid), 'st', 'allocating')
redis.call('ZREM', ACCEPTING, sid)
redis.call('ZADD', ALLOCATING, int(now + tonumber(ARGV[3])), sid)
local ids = session_ticket_ids(s)
for _, other in ipairs(ids) do
  if other ~= id then touch(other, now) end
end
emit('match.accepted', nil, sid, s.md, '{}')
publish(ids)
return view(id)
