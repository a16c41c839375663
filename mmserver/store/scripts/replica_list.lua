-- Returns the info (JSON) of every live replica; forgets the ones whose record expired.
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', REPLICAS, '-inf', int(now))
local ids = redis.call('ZRANGE', REPLICAS, 0, -1)
local out = {}
for _, id in ipairs(ids) do
  local info = redis.call('GET', REPLICA_PREFIX .. id)
  if info then out[#out + 1] = info end
end
return out
