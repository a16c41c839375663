-- ARGV: match_id, retention_s, reason. Idempotent. Returns {'ok', status, players},
-- {'loading', state} or {'notfound'}.
local mid, retention = ARGV[1], tonumber(ARGV[2])
local s = load_session(mid)
if s.st == 'assigned' then
  publish(finish(mid, now_ms(), ARGV[3], retention, s))
elseif s.st == 'accepting' or s.st == 'allocating' then
  -- A loading session: no server runs it yet (its players' release ends it).
  return { 'loading', s.st }
elseif s.st ~= 'finished' then
  -- Unknown, or a loading session that never became a match.
  return { 'notfound' }
end
return { 'ok', 'finished', s.pl }
