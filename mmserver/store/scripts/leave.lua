-- ARGV: match_id, player_id, retention_s. The game server reports a player gone: the player
-- leaves the roster, its place opens (for a backfill), its version goes up. A solo ticket
-- ends 'finished' with reason 'left'; a party ticket keeps playing for the members still
-- there: the one who left is marked in the ticket's lf and freed from the player index (it
-- may queue again), and the ticket finishes, reason 'left', when its last player leaves.
-- Idempotent: a player among the match's recent leavers answers 'left' again.
-- Returns {'ok', ticket_id or '', match version}, {'notfound'} (no such match),
-- {'absent'} (the player is not in it) or {'state', state} (the match is not assigned).
local mid, player, retention = ARGV[1], ARGV[2], tonumber(ARGV[3])
local s = load_session(mid)
if s.st == nil then return { 'notfound' } end
local id = redis.call('HGET', plkey(player), player)
local t = id and load(id) or {}
if s.st == 'assigned' and t.s == 'assigned' and t.x == mid then
  local now = now_ms()
  local staying = {}
  for _, p in ipairs(present_players(t)) do
    if p ~= player then staying[#staying + 1] = p end
  end
  if #staying == 0 then
    make_terminal(id, t, now, 'finished', 'left', retention)
    add_count('a:' .. t.m, -1)
    count_outcome(t.m, 'finished', 1)
    off_roster(mid, s, { player }, id)
  else
    local left = split(t.lf, ',')
    left[#left + 1] = player
    -- A new version: its holders' long-polls wake, the assignment's roster changed.
    t.lf, t.v, t.u = table.concat(left, ','), tostring(tonumber(t.v) + 1), int(now)
    save_ticket(id, t)
    redis.call('HDEL', plkey(player), player)
    off_roster(mid, s, { player }, nil)
  end
  emit('match.player_left', id, mid, t.m, cjson.encode({ players = { player }, reason = 'left' }))
  publish({ id })
  publish_views(session_ticket_ids(s))  -- the others' assignment shows the roster
  return { 'ok', id, s.mv }
end
for _, p in ipairs(split(s.lf, ',')) do
  if p == player then return { 'ok', '', s.mv or '1' } end
end
if s.st ~= 'assigned' then return { 'state', s.st } end
return { 'absent' }
