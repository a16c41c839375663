-- ARGV: ticket_id, token_hash, allocation_timeout_ms
-- The ticket and its session are loaded with their pending claim not yet written (defer):
-- each is written once, with this call's changes, and the view is built from the tables as
-- updated here (no read back).
local id = ARGV[1]
local t, err = authorised(id, ARGV[2], true)
if err then return err end
if t.s ~= 'matched' then
  return { 'conflict', 'the ticket is ' .. t.s .. ', not in a ready check' }
end
local sid = t.x
local s = load_session(sid, true)
-- Already past the ready check (all accepted, or none was asked for): nothing to do.
if s.st ~= 'accepting' or t.c == '1' then
  if t['@w'] then apply_claim(id, t) end
  save_session(sid, s, {})
  return view(id, t, s)
end
local now = now_ms()
if now >= tonumber(s.dl) then
  if t['@w'] then apply_claim(id, t) end
  save_session(sid, s, {})
  return { 'conflict', 'the ready check has timed out' }
end
t.c, t.v, t.u = '1', tostring(tonumber(t.v) + 1), int(now)
if t['@w'] then
  apply_claim(id, t)
else
  save_ticket(id, t)
end
-- s was loaded in this call: its count is the current one (one HSET, not an HINCRBY).
local accepted = tonumber(s.n or '0') + 1
s.n = int(accepted)
emit('ticket.accepted', id, sid, t.m, '{}')
if accepted < tonumber(s.c) then
  save_session(sid, s, { 'n', s.n })
  publish({ id })
  return view(id, t, s)
end
-- Everyone accepted: the session waits for a server.
s.st = 'allocating'
save_session(sid, s, { 'n', s.n, 'st', s.st })
redis.call('ZREM', ACCEPTING, sid)
redis.call('ZADD', alkey(s.rg), int(now + tonumber(ARGV[3])), sid)
-- (Its claim recorded the region already, unless a release before made the session.)
redis.call('SADD', ALLOCATING_REGIONS, s.rg or '')
local ids = session_ticket_ids(s)
for _, other in ipairs(ids) do
  if other ~= id then touch(other, now) end
end
emit('match.accepted', nil, sid, s.md, '{}')
publish(ids)
return view(id, t, s)
