-- ARGV: limit, heartbeat_ttl_ms, then the static server addresses from the configuration.
-- Makes sure every static server exists, then gives free healthy servers to the oldest
-- allocating sessions, each session becoming a match and its tickets assigned.
-- Returns {allocated, waiting} (waiting: sessions still without a server).
local limit, hb_ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 3, #ARGV do
  local address = ARGV[i]
  if redis.call('EXISTS', svkey(address)) == 0 then
    -- A static server's id is its address; it never heartbeats and is always healthy.
    redis.call('HSET', svkey(address), 'a', address, 'k', 's')
    redis.call('ZADD', FREE, '+inf', address)
  end
end
local now = now_ms()
local allocated, changed = 0, {}
local sessions = redis.call('ZRANGE', ALLOCATING, 0, limit - 1)
for _, sid in ipairs(sessions) do
  local s = hgetall(skey(sid))
  if s.st ~= 'allocating' then
    redis.call('ZREM', ALLOCATING, sid)
  else
    local pick = redis.call('ZREVRANGEBYSCORE', FREE, '+inf', int(now - hb_ttl), 'LIMIT', 0, 1)
    local server = pick[1]
    if not server then break end
    local sv = hgetall(svkey(server))
    redis.call('ZREM', FREE, server)
    redis.call('HSET', svkey(server), 'm', sid)
    redis.call('SADD', BUSY, server)
    if sv.k ~= 's' then redis.call('ZADD', 'mm:sv:hb', sv.h, server) end
    redis.call('HSET', skey(sid), 'st', 'assigned', 'sv', server, 'ad', sv.a, 'as', int(now))
    redis.call('ZREM', ALLOCATING, sid)
    redis.call('SADD', ASSIGNED, sid)
    local n = 0
    for _, id in ipairs(session_ticket_ids(s)) do
      local key = tkey(id)
      if redis.call('HGET', key, 's') == 'matched' and redis.call('HGET', key, 'x') == sid then
        redis.call('HSET', key, 's', 'assigned')
        redis.call('HDEL', key, 'c', 'd')
        touch(id, now)
        changed[#changed + 1] = id
        n = n + 1
      end
    end
    redis.call('HINCRBY', COUNTS, 'm:' .. s.md, -n)
    redis.call('HINCRBY', COUNTS, 'a:' .. s.md, n)
    allocated = allocated + 1
  end
end
publish(changed)
return { allocated, redis.call('ZCARD', ALLOCATING) }
