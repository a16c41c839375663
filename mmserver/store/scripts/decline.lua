-- ARGV: ticket_id, token_hash, retention_s
local id, retention = ARGV[1], tonumber(ARGV[3])
local t, err = authorised(id, ARGV[2])
if err then return err end
if t.s == 'cancelled' and t.w == 'declined by player' then return view(id) end
if t.s ~= 'matched' then
  return { 'conflict', 'the ticket is ' .. t.s .. ', not in a ready check' }
end
local now = now_ms()
local s = load_session(t.x)
if s.dl and s.st == 'accepting' and now >= tonumber(s.dl) then
  return { 'conflict', 'the ready check has timed out' }
end
publish(dissolve(t.x, now, id, 'declined by player', retention))
return view(id)
