-- Returns the info (JSON) of every live replica; forgets the ones whose record expired.
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', 'mm:replicas', '-inf', int(now))
local ids = redis.call('ZRANGE', 'mm:replicas', 0, -1)
local out = {}
for _, id in ipairs(ids) do
  local info = redis.call('GET', 'mm:r:' .. id)
  if info then out[#out + 1] = info end
end
return out
