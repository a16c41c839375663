-- ARGV: player_id, retention_s. An operator releases a player: its live ticket is cancelled
-- (queued, or in a loading session, whose other tickets go back to their queue), or, in a
-- match, finished with reason 'released by operator' and taken off the match's roster.
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
  local mid = t.x
  make_terminal(id, t, now, 'finished', reason, retention)
  add_count('a:' .. t.m, -1)
  count_outcome(t.m, 'finished', 1)
  -- Off the roster: the match's ticket and player lists keep only who is still in it.
  local players = present_players(t)
  off_roster(mid, load_session(mid), players, id)
  emit('match.player_left', id, mid, t.m, cjson.encode({ players = players, reason = reason }))
  publish({ id })
end
return view(id)
