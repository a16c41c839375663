-- ARGV: ticket_id, token_hash, retention_s
local id, retention = ARGV[1], tonumber(ARGV[3])
local t, err = authorised(id, ARGV[2])
if err then return err end
local now = now_ms()
if t.s == 'cancelled' then return view(id) end
if t.s == 'queued' then
  redis.call('ZREM', qkey(t.m, t.g or ''), member(id, t))
  make_terminal(id, t, now, 'cancelled', 'cancelled by client', retention)
  count_outcome(t.m, 'cancelled', 1)
  publish({ id })
  return view(id)
end
if t.s == 'matched' then
  publish(dissolve(t.x, now, id, 'cancelled by client', retention))
  return view(id)
end
return { 'conflict', 'a ticket that is ' .. t.s .. ' cannot be cancelled' }
