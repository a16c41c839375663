-- ARGV: limit, heartbeat_ttl_ms, static_digest, then (only when asked for) the static server
-- addresses from the configuration. Makes sure every static server exists (whenever the
-- digest stored in Redis differs: first start, flushed Redis, changed list), then gives free healthy servers to the oldest
-- allocating sessions, each session becoming a match and its tickets assigned.
-- Returns {allocated, waiting} (waiting: sessions still without a server), or {'seed'} when
-- the static addresses are needed.
local limit, hb_ttl, digest = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
if digest ~= '' and redis.call('GET', 'mm:sv:static') ~= digest then
  if #ARGV < 4 then return { 'seed' } end
  for i = 4, #ARGV do
    local address = ARGV[i]
    if redis.call('EXISTS', svkey(address)) == 0 then
      -- A static server's id is its address; it never heartbeats and is always healthy.
      redis.call('HSET', svkey(address), 'a', address, 'k', 's')
      redis.call('ZADD', FREE, '+inf', address)
    end
  end
  redis.call('SET', 'mm:sv:static', digest)
end
local now = now_ms()
local snow = int(now)
local sessions = redis.call('ZRANGE', ALLOCATING, 0, limit - 1)
if #sessions == 0 then return { 0, 0 } end
-- Freshest heartbeat first (static servers, at +inf, before registered ones).
local servers = redis.call('ZREVRANGEBYSCORE', FREE, '+inf', int(now - hb_ttl), 'LIMIT', 0, #sessions)
local next_server = 1
local changed, done, taken, watched, assigned = {}, {}, {}, {}, {}
local per_mode = {}
for _, sid in ipairs(sessions) do
  local loaded = load_session(sid)
  local s = { loaded.st, loaded.tk, loaded.md }
  if s[1] ~= 'allocating' then
    done[#done + 1] = sid  -- dissolved meanwhile: only the index entry is left
  else
    local server = servers[next_server]
    if not server then break end
    next_server = next_server + 1
    local sv = redis.call('HMGET', svkey(server), 'a', 'k', 'h')
    redis.call('HSET', svkey(server), 'm', sid)
    taken[#taken + 1] = server
    if sv[2] ~= 's' then watched[#watched + 1] = sv[3]; watched[#watched + 1] = server end
    redis.call('HSET', skey(sid), 'st', 'assigned', 'sv', server, 'ad', sv[1], 'as', snow)
    done[#done + 1] = sid
    assigned[#assigned + 1] = sid
    local n, players = 0, {}
    for _, id in ipairs(split(s[2], ',;')) do
      local t = load(id)
      if t.s == 'matched' and t.x == sid then
        redis.call('HSET', tkey(id), 's', 'assigned', 'u', snow, 'v', tonumber(t.v) + 1)
        changed[#changed + 1] = id
        n = n + 1
      end
      for _, p in ipairs(ticket_players(t)) do players[#players + 1] = p end
    end
    redis.call('HSET', skey(sid), 'pl', table.concat(players, ','))
    per_mode[s[3]] = (per_mode[s[3]] or 0) + n
  end
end
local function each_chunk(list, fn)
  for i = 1, #list, 1000 do fn(unpack(list, i, math.min(i + 999, #list))) end
end
each_chunk(taken, function(...) redis.call('ZREM', FREE, ...); redis.call('SADD', BUSY, ...) end)
each_chunk(watched, function(...) redis.call('ZADD', 'mm:sv:hb', ...) end)
each_chunk(done, function(...) redis.call('ZREM', ALLOCATING, ...) end)
each_chunk(assigned, function(...) redis.call('SADD', ASSIGNED, ...) end)
for mode, n in pairs(per_mode) do
  redis.call('HINCRBY', COUNTS, 'm:' .. mode, -n)
  redis.call('HINCRBY', COUNTS, 'a:' .. mode, n)
  count_outcome(mode, 'assigned', n)
end
publish(changed)
return { #taken, redis.call('ZCARD', ALLOCATING) }
