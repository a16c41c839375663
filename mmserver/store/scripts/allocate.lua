-- ARGV: limit, heartbeat_ttl_ms, static_digest, salt, max durations ('mode=ms,...'),
--       static count N, then (only when asked for) N static entries 'address|region'.
-- Reconciles the static pool with the configuration whenever the digest stored in Redis
-- differs (first start, flushed Redis, changed list): listed servers are created or updated,
-- servers no longer listed leave the pool (at once if free, after their match if busy). Then
-- gives free healthy servers to up to `limit` waiting sessions: a session of a region takes a
-- server of that region, else one without a region; a session without a region, one without
-- a region. Each session becomes a match, its tickets assigned with a join token each.
-- Sessions wait in one line per region (alkey), oldest deadline first. A call reads from each
-- line as many sessions as there are servers it could take, and serves them oldest first
-- across the lines, so a region without a free server keeps only its own sessions waiting
-- (its line is not even read), and the lines share the servers without a region by age.
-- Returns {allocated, waiting, clashes, more} (waiting: sessions still without a server, in
-- all; clashes: static addresses held by a registered server, comma separated; more: 1 when
-- another call may find more to do: the limit was reached, or entries that took no server
-- were cleared), or {'seed'} when the static entries are needed.
local limit, hb_ttl, digest, salt = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local n_static = tonumber(ARGV[6])
local clashes = {}
if redis.call('GET', STATIC_DIGEST) ~= digest then
  if n_static > 0 and #ARGV < 6 + n_static then return { 'seed' } end
  local wanted = {}
  for i = 7, 6 + n_static do
    local address, region = string.match(ARGV[i], '^([^|]*)|(.*)$')
    wanted[address] = true
    local holder = redis.call('HGET', ADDRESSES, address)
    local kind = redis.call('HGET', svkey(address), 'k')
    if (holder and holder ~= address) or kind == 'r' then
      -- A registered server holds the address, or uses it as its id: it stays that server's,
      -- and the static entry is retried at every tick until the server leaves.
      clashes[#clashes + 1] = address
    else
      -- A static server's id is its address; it never heartbeats and is always healthy.
      local key = svkey(address)
      local sv = hgetall(key)
      redis.call('HSET', key, 'a', address, 'k', 's')
      redis.call('HDEL', key, 'x')  -- listed again: no longer leaving
      if region ~= '' then redis.call('HSET', key, 'g', region) else redis.call('HDEL', key, 'g') end
      redis.call('HSET', ADDRESSES, address, address)
      redis.call('SADD', STATIC, address)
      if not sv.m then
        if sv.a and (sv.g or '') ~= region then redis.call('ZREM', freekey(sv.g), address) end
        redis.call('ZADD', freekey(region), '+inf', address)
      end
    end
  end
  for _, id in ipairs(redis.call('SMEMBERS', STATIC)) do
    if not wanted[id] then
      local sv = hgetall(svkey(id))
      if sv.m then
        redis.call('HSET', svkey(id), 'x', '1')  -- removed when its match ends
        redis.call('SREM', STATIC, id)
      else
        remove_server(id, sv)
      end
    end
  end
  -- Reconciled only when every listed address is in the pool: a clash is retried next time.
  if #clashes == 0 then redis.call('SET', STATIC_DIGEST, digest) end
end
local max_ms = {}
for _, entry in ipairs(split(ARGV[5], ',')) do
  local mode, ms = string.match(entry, '^(.*)=(%d+)$')
  max_ms[mode] = tonumber(ms)
end
local now = now_ms()
local snow = int(now)
local more = 0
-- The one line of releases before: up to `limit` of its sessions move to their region's line
-- (more: the tick calls again until it is empty).
local old = redis.call('ZRANGE', ALLOCATING, 0, limit - 1, 'WITHSCORES')
for i = 1, #old, 2 do
  local s = load_session(old[i])
  if s.st == 'allocating' then
    redis.call('ZADD', alkey(s.rg), old[i + 1], old[i])
    redis.call('SADD', ALLOCATING_REGIONS, s.rg or '')
  end
  redis.call('ZREM', ALLOCATING, old[i])
end
if #old == 2 * limit then more = 1 end
local lines = allocating_lines()

-- Each pool is read once, freshest heartbeat first (static servers, at +inf, first); a server
-- is taken off its pool only when a session gets it.
local pools = {}
local function pool_of(key)
  local pool = pools[key]
  if pool == nil then
    pool = { list = redis.call('ZREVRANGEBYSCORE', key, '+inf', int(now - hb_ttl), 'LIMIT', 0, limit),
             next = 1 }
    pools[key] = pool
  end
  return pool
end
-- The pool a session of `region` would take its server from, or nil when both are empty.
local function pool_for(region)
  if region ~= '' then
    local pool = pool_of(freekey(region))
    if pool.list[pool.next] then return pool, freekey(region) end
  end
  local pool = pool_of(FREE)
  if pool.list[pool.next] then return pool, FREE end
  return nil
end
-- How many servers a session of `region` could take: its region's, then those without one.
local function available(region)
  local n = 0
  if region ~= '' then
    local pool = pool_of(freekey(region))
    n = #pool.list - pool.next + 1
  end
  local pool = pool_of(FREE)
  return n + #pool.list - pool.next + 1
end

-- From each line, as many sessions as it has servers (at most `limit`), oldest first across
-- the lines.
local candidates = {}
for _, key in ipairs(lines) do
  local region = string.sub(key, #ALLOCATING + 2)
  local n = redis.call('ZCARD', key) > 0 and math.min(limit, available(region)) or 0
  if n > 0 then
    local part = redis.call('ZRANGE', key, 0, n - 1, 'WITHSCORES')
    for i = 1, #part, 2 do
      candidates[#candidates + 1] = { sid = part[i], at = tonumber(part[i + 1]), key = key, region = region }
    end
  end
end
table.sort(candidates, function(a, b)
  if a.at ~= b.at then return a.at < b.at end
  return a.sid < b.sid
end)
local changed, taken, watched, assigned = {}, {}, {}, {}
local per_mode = {}
-- The session becomes a match on `server`.
local function give(sid, s, server)
  local sv = redis.call('HMGET', svkey(server), 'a', 'k', 'h')
  redis.call('HSET', svkey(server), 'm', sid)
  taken[#taken + 1] = server
  if sv[2] ~= 's' then watched[#watched + 1] = sv[3]; watched[#watched + 1] = server end
  assigned[#assigned + 1] = sid
  if max_ms[s.md] then redis.call('ZADD', ENDS, int(now + max_ms[s.md]), sid) end
  local n, teams = 0, {}
  for _, team in ipairs(fields(s.tk, ';')) do
    local players = {}
    for _, id in ipairs(split(team, ',')) do
      -- (A claim still pending, in a mode without a ready check, is written once, below.)
      local t = load(id, true)
      if t.s == 'matched' and t.x == sid then
        -- The join token: secret to the ticket's holders, checked by the game server
        -- against the roster's SHA-256 of it. The salt is fresh random bytes per call.
        t.s, t.u, t.v, t.j = 'assigned', snow, tostring(tonumber(t.v) + 1), redis.sha1hex(salt .. id)
        if t['@w'] then
          apply_claim(id, t)
        else
          save_ticket(id, t)
        end
        changed[#changed + 1] = id
        n = n + 1
        emit('ticket.assigned', id, sid, s.md, '{}')
      end
      for _, p in ipairs(ticket_players(t)) do players[#players + 1] = p end
    end
    teams[#teams + 1] = table.concat(players, ',')
  end
  -- One HSET for the match: its state, server and roster.
  redis.call('HSET', skey(sid), 'st', 'assigned', 'sv', server, 'ad', sv[1], 'as', snow,
             'pl', table.concat(teams, ';'))
  local roster = {}
  for i, team in ipairs(teams) do roster[i] = split(team, ',') end
  emit('match.assigned', nil, sid, s.md, cjson.encode({ server_id = server, address = sv[1],
                                                         region = (s.rg ~= '' and s.rg) or nil,
                                                         teams = roster }))
  per_mode[s.md] = (per_mode[s.md] or 0) + n
end

-- Each line's entries to clear, by line (in the order first met).
local cleared, cleared_keys = {}, {}
local function clear(key, sid)
  local list = cleared[key]
  if list == nil then
    list = {}
    cleared[key] = list
    cleared_keys[#cleared_keys + 1] = key
  end
  list[#list + 1] = sid
end
local budget = limit
for _, c in ipairs(candidates) do
  if budget == 0 then break end
  local pool, key = pool_for(c.region)
  if pool then  -- (else this line's servers ran out: the rest of it waits)
    local s = load_session(c.sid)
    if s.st ~= 'allocating' then
      clear(c.key, c.sid)  -- dissolved meanwhile: only the line's entry was left
      more = 1
    elseif (s.rg or '') ~= c.region then
      -- In another region's line (never, by the claims): moved to its own, for a later call.
      redis.call('ZADD', alkey(s.rg), int(c.at), c.sid)
      redis.call('SADD', ALLOCATING_REGIONS, s.rg or '')
      clear(c.key, c.sid)
      more = 1
    else
      local server = pool.list[pool.next]
      pool.next = pool.next + 1
      redis.call('ZREM', key, server)
      give(c.sid, s, server)
      clear(c.key, c.sid)
    end
    budget = budget - 1
  end
end
-- The limit reached: more may wait, in a line or behind what was read of it.
if budget == 0 then more = 1 end
local function each_chunk(list, fn)
  for i = 1, #list, 1000 do fn(unpack(list, i, math.min(i + 999, #list))) end
end
each_chunk(taken, function(...) redis.call('SADD', BUSY, ...) end)
each_chunk(watched, function(...) redis.call('ZADD', HEARTBEATS, ...) end)
each_chunk(assigned, function(...) redis.call('SADD', ASSIGNED, ...) end)
for _, key in ipairs(cleared_keys) do
  each_chunk(cleared[key], function(...) redis.call('ZREM', key, ...) end)
end
for mode, n in pairs(per_mode) do
  add_count('m:' .. mode, -n)
  add_count('a:' .. mode, n)
  count_outcome(mode, 'assigned', n)
end
publish(changed)
local waiting = redis.call('ZCARD', ALLOCATING)
for _, key in ipairs(lines) do waiting = waiting + redis.call('ZCARD', key) end
return { #taken, waiting, table.concat(clashes, ','), more }
