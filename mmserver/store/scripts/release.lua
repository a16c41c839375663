-- ARGV: player_id, retention_s. An operator releases a player: its live ticket is cancelled
-- (queued, or in a loading session, whose other tickets go back to their queue; a party's
-- ticket with every member), or, in a match, the player leaves it as if the game server had
-- reported it gone (leave_match: a party plays on without it), the reason 'released by
-- operator'.
-- Returns the ticket's view, or {'notfound'} when the player holds no live ticket.
local player, retention = ARGV[1], tonumber(ARGV[2])
local reason = 'released by operator'
local id = redis.call('HGET', plkey(player), player)
if not id then return { 'notfound' } end
local t = load(id)
if not is_live(t.s) then return { 'notfound' } end
local now = now_ms()
if t.s == 'queued' then
  redis.call('ZREM', qkey(t.m, t.g or ''), member(id, t))
  make_terminal(id, t, now, 'cancelled', reason, retention)
  count_outcome(t.m, 'cancelled', 1)
  publish({ id })
elseif t.s == 'matched' then
  publish(dissolve(t.x, now, id, reason, retention))
else
  leave_match(t.x, load_session(t.x), id, t, player, now, reason, retention)
end
return view(id)
