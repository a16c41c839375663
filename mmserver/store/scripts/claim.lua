-- ARGV: mode, region, accept_timeout_ms (0: no ready check), allocation_timeout_ms,
--       P (proposals), M (tickets in all of them), then P session ids, P teams ('a,b;c,d':
--       ticket ids per team, the session's tk), P ticket counts, M queue members
--       (id|mmr|size|enqueued_ms as the caller read them, or the bare ticket id when it has
--       none), M ticket ids (the same tickets, proposal after proposal, in the same order).
-- Each proposal is all-or-nothing: every ticket must still be in this queue (its member
-- present: a member exists exactly while its ticket is queued there), else nothing of it
-- is claimed. Returns one entry per proposal: '' when claimed, otherwise the
-- comma-separated ids that were no longer queued here.
-- Written for speed (a tick claims tens of thousands of tickets): the arguments come
-- pre-split (no string parsing here), one HSET per proposal (its session); membership
-- checks, the tickets' new state (CLAIMED, see load() in lib.lua), the queue and the
-- deadline set are all batched commands.
local mode, region = ARGV[1], ARGV[2]
local accept_ms, alloc_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local P, M = tonumber(ARGV[5]), tonumber(ARGV[6])
local SIDS, TEAMS, COUNTS_AT = 6, 6 + P, 6 + 2 * P
local MEMBERS, IDS = 6 + 3 * P, 6 + 3 * P + M
local q = qkey(mode, region)
local now = now_ms()
local snow = int(now)
local state, deadline_key, deadline
if accept_ms > 0 then
  state, deadline_key, deadline = 'accepting', ACCEPTING, int(now + accept_ms)
else
  state, deadline_key, deadline = 'allocating', ALLOCATING, int(now + alloc_ms)
end

-- Chunks stay well inside Lua's stack limit for unpack.
local function chunked(command, key, list, n)
  if n <= 1000 then return redis.call(command, key, unpack(list, 1, n)) end
  local out = {}
  for i = 1, n, 1000 do
    local part = redis.call(command, key, unpack(list, i, math.min(i + 999, n)))
    if type(part) == 'table' then
      for _, v in ipairs(part) do out[#out + 1] = v end
    end
  end
  return out
end

-- 1. The members; a bare id gets its member from the ticket's record (stays bare, and so
--    absent from the queue, if the ticket is not queued here).
local members = {}
for j = 1, M do
  local m, id = ARGV[MEMBERS + j], ARGV[IDS + j]
  if m == id then
    local rec = redis.call('HGET', tqkey(id), id)
    if rec then
      local t = unpack_queued(rec)
      if t.m == mode and (t.g or '') == region then m = member(id, t) end
    end
  end
  members[j] = m
end

-- 2. One membership check for all of them (false: not in the queue).
local scores = chunked('ZMSCORE', q, members, M)

-- 3. All-or-nothing per proposal; a ticket claimed earlier in this call is taken.
local results, pending, removed, deadlines = {}, {}, {}, {}
local taken = {}
local claimed_tickets = 0
local last = 0
for k = 1, P do
  local first, count = last + 1, tonumber(ARGV[COUNTS_AT + k])
  last = last + count
  local ok = true
  for j = first, last do
    local id = ARGV[IDS + j]
    if not scores[j] or taken[id] then ok = false; break end
    taken[id] = k
  end
  if ok then
    local sid = ARGV[SIDS + k]
    local head = sid .. '|'
    local tail = '|' .. snow
    for j = first, last do
      local id = ARGV[IDS + j]
      pending[#pending + 1] = id
      pending[#pending + 1] = head .. scores[j] .. tail
      removed[#removed + 1] = members[j]
    end
    if accept_ms > 0 then
      redis.call('HSET', skey(sid), 'st', state, 'md', mode, 'rg', region, 'tk', ARGV[TEAMS + k],
                 'c', count, 'n', 0, 'dl', deadline)
    else
      redis.call('HSET', skey(sid), 'st', state, 'md', mode, 'rg', region, 'tk', ARGV[TEAMS + k],
                 'c', count, 'n', 0)
    end
    deadlines[#deadlines + 1] = deadline
    deadlines[#deadlines + 1] = sid
    claimed_tickets = claimed_tickets + count
    results[k] = ''
  else
    -- Undo this proposal's marks, then name what failed (rare: the slow path is fine).
    local failed, seen = {}, {}
    for j = first, last do
      local id = ARGV[IDS + j]
      if taken[id] == k then taken[id] = nil end
    end
    for j = first, last do
      local id = ARGV[IDS + j]
      if not scores[j] or taken[id] or seen[id] then failed[#failed + 1] = id end
      seen[id] = true
    end
    results[k] = table.concat(failed, ',')
  end
end

-- 4. Batched writes.
if #removed > 0 then
  chunked('ZREM', q, removed, #removed)
  chunked('HSET', CLAIMED, pending, #pending)
  chunked('ZADD', deadline_key, deadlines, #deadlines)
  redis.call('HINCRBY', COUNTS, 'm:' .. mode, claimed_tickets)
  local changed = {}
  for i = 1, #pending, 2 do changed[#changed + 1] = pending[i] end
  publish(changed)
end
return results
