-- ARGV: limit, retention_s, heartbeat_ttl_ms, server_retention_ms, then the configured regions
-- Processes up to `limit` due deadlines of each kind: missed ready checks, allocation
-- timeouts, ticket TTLs (the scores of the queues), silent busy servers, matches past their
-- mode's max_match_s, registered servers silent past their retention. Every entry is
-- re-checked against the current state, so two replicas processing the same deadline, or
-- one processing it late, do no harm.
-- Then open backfills past their ttl_s expire.
-- Returns {ready_checks, allocation_timeouts, expired_tickets, lost_servers, more (0/1),
--          ended_matches, removed_servers, expired_backfills}.
local limit, retention, hb_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local server_retention = tonumber(ARGV[4])
local now = now_ms()
local changed = {}
local counts = { 0, 0, 0, 0 }
local more = 0
-- The event log's age bound (its length bound is kept by every append).
redis.call('XTRIM', EVENT_LOG, 'MINID', '~', int(now - EVENT_MAX_AGE_MS))
local function append(ids) for _, id in ipairs(ids) do changed[#changed + 1] = id end end

-- Missed ready checks, then sessions past their allocation deadline in any region's line (and
-- in the one line of releases before), up to `limit` of each kind.
local lines = allocating_lines()
lines[#lines + 1] = ALLOCATING
for kind, keys in ipairs({ { ACCEPTING }, lines }) do
  local left = limit
  for _, key in ipairs(keys) do
    -- With the limit reached, a line with anything due only says there is more.
    local due = redis.call('ZRANGEBYSCORE', key, '-inf', int(now), 'LIMIT', 0, left + 1)
    if #due > left then more = 1 end
    local n = math.min(#due, left)
    for i = 1, n do
      append(dissolve(due[i], now, nil, nil, retention))
      redis.call('ZREM', key, due[i])  -- (dissolve removed it, unless its session was gone)
      counts[kind] = counts[kind] + 1
    end
    left = left - n
    if left == 0 and more == 1 then break end
  end
end

local budget = limit
local expired = {}  -- mode -> tickets expired (count_outcome once per mode)
for _, q in ipairs(redis.call('SMEMBERS', QUEUE_KEYS)) do
  if budget <= 0 then more = 1; break end
  local due = redis.call('ZRANGEBYSCORE', q, '-inf', int(now), 'LIMIT', 0, budget + 1)
  if #due > budget then more = 1 end
  for i = 1, math.min(#due, budget) do
    local m = due[i]
    local id = string.match(m, '^[^|]+')
    redis.call('ZREM', q, m)
    local t = load(id)
    if t.s == 'queued' and member(id, t) == m then
      local ttl_s = string.format('%g', ttl_ms(t.m) / 1000)
      make_terminal(id, t, now, 'expired', 'not polled for ' .. ttl_s .. ' s', retention)
      changed[#changed + 1] = id
      counts[3] = counts[3] + 1
      expired[t.m] = (expired[t.m] or 0) + 1
    end
  end
  budget = budget - math.min(#due, budget)
end
for mode, n in pairs(expired) do count_outcome(mode, 'expired', n) end

-- A busy registered server that stopped heartbeating will not report its match over: end
-- the match so its players are free to queue again.
local lost = redis.call('ZRANGEBYSCORE', HEARTBEATS, '-inf', int(now - hb_ttl), 'LIMIT', 0, limit + 1)
if #lost > limit then more = 1 end
for i = 1, math.min(#lost, limit) do
  local server = lost[i]
  redis.call('ZREM', HEARTBEATS, server)
  local mid = redis.call('HGET', svkey(server), 'm')
  if mid then
    append(finish(mid, now, 'server lost', retention))
    counts[4] = counts[4] + 1
  end
end

-- An assigned match nobody reported over ends at its mode's max_match_s, freeing its server.
local ended = 0
local overdue = redis.call('ZRANGEBYSCORE', ENDS, '-inf', int(now), 'LIMIT', 0, limit + 1)
if #overdue > limit then more = 1 end
for i = 1, math.min(#overdue, limit) do
  redis.call('ZREM', ENDS, overdue[i])
  append(finish(overdue[i], now, 'max duration', retention))
  ended = ended + 1
end

-- A free registered server silent past its retention leaves the registry (static servers
-- score +inf and never do; a busy one first loses its match above, then waits here).
local removed = 0
local pools = { FREE }
for i = 5, #ARGV do pools[#pools + 1] = freekey(ARGV[i]) end
for _, pool in ipairs(pools) do
  local silent = redis.call('ZRANGEBYSCORE', pool, '-inf', '(' .. int(now - server_retention), 'LIMIT', 0, limit + 1)
  if #silent > limit then more = 1 end
  for i = 1, math.min(#silent, limit) do
    local sv = hgetall(svkey(silent[i]))
    if sv.k ~= 's' and not sv.m then
      remove_server(silent[i], sv)
      removed = removed + 1
    elseif sv.a == nil then
      redis.call('ZREM', pool, silent[i])  -- an entry with no server behind it
    end
  end
end

-- An open backfill past its ttl_s ends (a server that still wants players asks again).
local lapsed = 0
local stale = redis.call('ZRANGEBYSCORE', BACKFILL_EXPIRY, '-inf', int(now), 'LIMIT', 0, limit + 1)
if #stale > limit then more = 1 end
for i = 1, math.min(#stale, limit) do
  local b = hgetall(bfkey(stale[i]))
  if b.st == 'open' then
    end_backfill(stale[i], b, 'expired', '', retention)
    emit('backfill.expired', nil, b.m, b.o, backfill_data(stale[i]))
    lapsed = lapsed + 1
  else
    redis.call('ZREM', BACKFILL_EXPIRY, stale[i])
  end
end

publish(changed)
return { counts[1], counts[2], counts[3], counts[4], more, ended, removed, lapsed }
