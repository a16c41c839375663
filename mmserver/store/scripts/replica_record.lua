-- ARGV: replica_id, info_json, ttl_ms
local now = now_ms()
redis.call('SET', REPLICA_PREFIX .. ARGV[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', REPLICAS, int(now + tonumber(ARGV[3])), ARGV[1])
return 1
