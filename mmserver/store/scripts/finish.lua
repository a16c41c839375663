-- ARGV: match_id, retention_s, reason. Idempotent. Returns {'ok', status, players} or {'notfound'}.
local mid, retention = ARGV[1], tonumber(ARGV[2])
local s = load_session(mid)
if s.st == 'assigned' then
  publish(finish(mid, now_ms(), ARGV[3], retention, s))
elseif s.st ~= 'finished' then
  -- Unknown, or a loading session that never became a match.
  return { 'notfound' }
end
return { 'ok', 'finished', s.pl }
