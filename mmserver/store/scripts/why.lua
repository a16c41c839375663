-- ARGV: queue's why key, writer token, 'full', 'replace' or 'delta', ttl_ms, counts (JSON: rule ->
--       tickets), S (buckets to set), D (buckets to drop), K (bucket names of a whole full write),
--       then S bucket names and S packed values ('\n<ticket id>=<rule>' per ticket,
--       keys.why_bucket), the D bucket names to drop, the K names, then (delta) the ids of the
--       tickets whose explanation changed.
-- The explanations of one queue (what kept each ticket from a match at the last tick) are
-- written by whichever replica ticked it, a bucket of tickets per field. A replica sends only
-- the buckets that changed since its own last write ('delta', naming the tickets that changed);
-- if another replica wrote in between (the '@by' field names the last writer), it answers 0
-- and the replica sends everything: 'full' for the first call, which drops every bucket not
-- among the K names of the whole write, 'replace' for the rest of it. Those compare each
-- bucket with what Redis holds and name only the tickets whose explanation changed: replicas
-- that take turns on a queue write in full every tick, and naming every ticket would empty
-- every replica's view cache at every tick. Bounded: buckets hold only tickets of the queue at
-- a tick, and the key expires when no tick refreshes it.
local key, token, how, ttl, counts = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local S, D, K = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local NAMES, VALUES, DROPS, ALL = 8, 8 + S, 8 + 2 * S, 8 + 2 * S + D
local IDS = ALL + K
if how ~= 'full' and redis.call('HGET', key, '@by') ~= token then return 0 end
local touched = {}
for i = IDS + 1, #ARGV do touched[#touched + 1] = ARGV[i] end
local ENTRY = '\n([^=\n]*)=([^\n]*)'

local function name_all(packed)
  for id in string.gmatch(packed, ENTRY) do touched[#touched + 1] = id end
end

local function name_changed(old, new)
  local before = {}
  for id, rule in string.gmatch(old, ENTRY) do before[id] = rule end
  for id, rule in string.gmatch(new, ENTRY) do
    if before[id] ~= rule then touched[#touched + 1] = id end
    before[id] = nil
  end
  for id in pairs(before) do touched[#touched + 1] = id end
end

if how == 'full' then
  local keep = {}
  for i = ALL + 1, IDS do keep[ARGV[i]] = true end
  local gone = {}
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if not keep[field] and string.sub(field, 1, 1) ~= '@' then gone[#gone + 1] = field end
  end
  for i = 1, #gone, 500 do
    local slice = { unpack(gone, i, math.min(i + 499, #gone)) }
    for _, packed in ipairs(redis.call('HMGET', key, unpack(slice))) do
      if packed then name_all(packed) end
    end
    redis.call('HDEL', key, unpack(slice))
  end
end
local compare = how ~= 'delta'
for i = 1, S, 500 do
  local last = math.min(i + 499, S)
  local olds = compare and redis.call('HMGET', key, unpack(ARGV, NAMES + i, NAMES + last))
  local pairs_ = {}
  for j = i, last do
    local new = ARGV[VALUES + j]
    local old = olds and olds[j - i + 1]
    if old ~= new then
      pairs_[#pairs_ + 1] = ARGV[NAMES + j]
      pairs_[#pairs_ + 1] = new
      if compare then
        if old then name_changed(old, new) else name_all(new) end
      end
    end
  end
  if #pairs_ > 0 then redis.call('HSET', key, unpack(pairs_)) end
end
for i = DROPS + 1, ALL, 500 do
  redis.call('HDEL', key, unpack(ARGV, i, math.min(i + 499, ALL)))
end
-- Every ticket whose explanation changed: its cached views are dropped (replicas' view caches).
publish_views(touched)
if redis.call('HLEN', key) == 0 or (S == 0 and counts == '{}' and redis.call('HLEN', key) <= 2) then
  -- Nothing waits: no key at all (the next write from anyone is then a full one).
  redis.call('DEL', key)
  return 1
end
redis.call('HSET', key, '@by', token, '@counts', counts)
redis.call('PEXPIRE', key, ttl)
return 1
