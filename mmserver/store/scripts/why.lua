-- ARGV: queue's why key, writer token, 'full' or 'delta', ttl_ms, counts (JSON: rule -> tickets),
--       S (entries to set), then S ticket ids and S rule names, then the ticket ids to drop.
-- The explanations of one queue (ticket id -> what kept it waiting at the last tick) are
-- written by whichever replica ticked it. A replica sends only what changed since its own
-- last write ('delta'); if another replica wrote in between (the '@by' field names the last
-- writer), it answers 0 and the replica sends everything ('full'). Bounded: entries exist
-- only for tickets of the queue at a tick, and the key expires when no tick refreshes it.
local key, token, how, ttl, counts = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local S = tonumber(ARGV[6])
local IDS, RULES, DROPS = 6, 6 + S, 7 + 2 * S
if how == 'delta' and redis.call('HGET', key, '@by') ~= token then return 0 end
if how == 'full' then redis.call('DEL', key) end
for i = 1, S, 500 do
  local pairs_ = {}
  for j = i, math.min(i + 499, S) do
    pairs_[#pairs_ + 1] = ARGV[IDS + j]
    pairs_[#pairs_ + 1] = ARGV[RULES + j]
  end
  redis.call('HSET', key, unpack(pairs_))
end
for i = DROPS, #ARGV, 500 do
  redis.call('HDEL', key, unpack(ARGV, i, math.min(i + 499, #ARGV)))
end
-- Every ticket whose explanation changed: its cached views are dropped (replicas' view caches).
local touched = {}
for j = 1, S do touched[j] = ARGV[IDS + j] end
for i = DROPS, #ARGV do touched[#touched + 1] = ARGV[i] end
publish_views(touched)
if redis.call('HLEN', key) == 0 or (S == 0 and counts == '{}' and redis.call('HLEN', key) <= 2) then
  -- Nothing waits: no key at all (the next write from anyone is then a full one).
  redis.call('DEL', key)
  return 1
end
redis.call('HSET', key, '@by', token, '@counts', counts)
redis.call('PEXPIRE', key, ttl)
return 1
