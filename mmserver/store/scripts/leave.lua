-- ARGV: match_id, player_id, retention_s. The game server reports a player gone: it leaves
-- the match (leave_match, lib/transitions.lua), its ticket finishing, reason 'left', when it
-- was the ticket's last player.
-- Idempotent: a player among the match's recent leavers answers 'left' again.
-- Returns {'ok', ticket_id or '', match version}, {'notfound'} (no such match),
-- {'absent'} (the player is not in it) or {'state', state} (the match is not assigned).
local mid, player, retention = ARGV[1], ARGV[2], tonumber(ARGV[3])
local s = load_session(mid)
if s.st == nil then return { 'notfound' } end
local id = redis.call('HGET', plkey(player), player)
local t = id and load(id) or {}
if s.st == 'assigned' and t.s == 'assigned' and t.x == mid then
  leave_match(mid, s, id, t, player, now_ms(), 'left', retention)
  return { 'ok', id, s.mv }
end
for _, p in ipairs(split(s.lf, ',')) do
  if p == player then return { 'ok', '', s.mv or '1' } end
end
if s.st ~= 'assigned' then return { 'state', s.st } end
return { 'absent' }
