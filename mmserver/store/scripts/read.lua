-- ARGV: ticket_id, token_hash. The view; a read refreshes the ticket's TTL deadline.
local id = ARGV[1]
local t, err = authorised(id, ARGV[2], true)
if err then return err end
local now = now_ms()
local deadline = int(now + ttl_ms(t.m))
if t.s == 'queued' then
  redis.call('ZADD', qkey(t.m, t.g or ''), 'XX', deadline, member(id, t))
elseif t.s == 'matched' then
  -- Kept for the way back to the queue should the session fail (see requeue). A claim still
  -- pending is written now, with it (one write).
  t.d = deadline
  if t['@w'] then apply_claim(id, t) else save_ticket(id, t) end
end
return view(id, t)  -- unchanged but for 'd', which the view leaves out
