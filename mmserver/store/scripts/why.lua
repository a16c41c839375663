-- ARGV: queue's why key, writer token, 'full' or 'delta', ttl_ms, counts (JSON: rule -> tickets),
--       S (buckets to set), D (buckets to drop), then S bucket names and S packed values
--       ('\n<ticket id>=<rule>' per ticket, keys.why_bucket), the D bucket names to drop, then
--       the ids of the tickets whose explanation changed.
-- The explanations of one queue (what kept each ticket from a match at the last tick) are
-- written by whichever replica ticked it, a bucket of tickets per field. A replica sends only
-- the buckets that changed since its own last write ('delta'); if another replica wrote in
-- between (the '@by' field names the last writer), it answers 0 and the replica sends
-- everything ('full'). Bounded: buckets hold only tickets of the queue at a tick, and the key
-- expires when no tick refreshes it.
local key, token, how, ttl, counts = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local S, D = tonumber(ARGV[6]), tonumber(ARGV[7])
local NAMES, VALUES, DROPS, IDS = 7, 7 + S, 7 + 2 * S, 7 + 2 * S + D
if how == 'delta' and redis.call('HGET', key, '@by') ~= token then return 0 end
if how == 'full' then redis.call('DEL', key) end
for i = 1, S, 500 do
  local pairs_ = {}
  for j = i, math.min(i + 499, S) do
    pairs_[#pairs_ + 1] = ARGV[NAMES + j]
    pairs_[#pairs_ + 1] = ARGV[VALUES + j]
  end
  redis.call('HSET', key, unpack(pairs_))
end
for i = DROPS + 1, IDS, 500 do
  redis.call('HDEL', key, unpack(ARGV, i, math.min(i + 499, IDS)))
end
-- Every ticket whose explanation changed: its cached views are dropped (replicas' view caches).
local touched = {}
for i = IDS + 1, #ARGV do touched[#touched + 1] = ARGV[i] end
publish_views(touched)
if redis.call('HLEN', key) == 0 or (S == 0 and counts == '{}' and redis.call('HLEN', key) <= 2) then
  -- Nothing waits: no key at all (the next write from anyone is then a full one).
  redis.call('DEL', key)
  return 1
end
redis.call('HSET', key, '@by', token, '@counts', counts)
redis.call('PEXPIRE', key, ttl)
return 1
