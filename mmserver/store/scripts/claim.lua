-- ARGV: mode, region, accept_timeout_ms (0: no ready check), allocation_timeout_ms,
--       P (proposals), M (tickets in all of them), layout, then six columns: P session ids,
--       P teams ('a,b;c,d': ticket ids per team, the session's tk), P extras ('' for a plain
--       mode, else 'region|json': the region the rules chose ('' for the queue's) and the
--       roles and chosen attributes as JSON, kept as the session's mx), P ticket counts, M
--       queue members (id|mmr|size|enqueued_ms as the caller read them, or the bare ticket id
--       when it has none), M ticket ids (the same tickets, proposal after proposal, in the
--       same order).
--       Layout 'j' (joined): each column is one argument, its values joined by '\n' (counts by
--       ','); the caller uses it when every column splits back into exactly its values (no
--       value holds a separator, no team is empty: sessions.py). Two shortcuts: extras '' when
--       every proposal has none, counts a single number when every proposal has that many
--       tickets (P > 1: a full column would hold a separator). Layout 'a': each value is an
--       argument of its own, column after column.
-- Each proposal is all-or-nothing: every ticket must still be in this queue (its member
-- present: a member exists exactly while its ticket is queued there), else nothing of it
-- is claimed. Returns one entry per proposal: '' when claimed, otherwise the
-- comma-separated ids that were no longer queued here.
-- Written for speed (a tick claims tens of thousands of tickets): the columns come joined
-- (the caller's client encodes a dozen arguments, not one per value, and Redis parses as
-- many), nothing is parsed beyond that; membership checks, the tickets' new state (CLAIMED,
-- see load() in lib/claims.lua), the new sessions (PENDING_SESSIONS, see load_session()), the
-- queue and the deadline set are all batched commands: a handful of calls per batch. What can
-- be done once per batch or per proposal is not done per ticket.
local mode, region = ARGV[1], ARGV[2]
local accept_ms, alloc_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local P, M = tonumber(ARGV[5]), tonumber(ARGV[6])
local find, sub = string.find, string.sub

-- The n values of one joined column (empty values kept).
local function column(s, sep, n)
  local out, start = {}, 1
  for i = 1, n - 1 do
    local e = find(s, sep, start, true)
    out[i] = sub(s, start, e - 1)
    start = e + 1
  end
  if n > 0 then out[n] = sub(s, start) end
  return out
end

local function slice(at, n)
  local out = {}
  for i = 1, n do out[i] = ARGV[at + i] end
  return out
end

local sids, teams, extras, counts, members, ids
if ARGV[7] == 'j' then
  sids, teams, members, ids = column(ARGV[8], '\n', P), column(ARGV[9], '\n', P),
                              column(ARGV[12], '\n', M), column(ARGV[13], '\n', M)
  if ARGV[10] ~= '' or P == 1 then extras = column(ARGV[10], '\n', P) end
  if P == 1 or find(ARGV[11], ',', 1, true) then counts = column(ARGV[11], ',', P) end
else
  sids, teams, extras, counts = slice(7, P), slice(7 + P, P), slice(7 + 2 * P, P), slice(7 + 3 * P, P)
  members, ids = slice(7 + 4 * P, M), slice(7 + 4 * P + M, M)
end
-- No extras: a plain mode. No counts: every proposal has this many tickets.
local same_count = not counts and tonumber(ARGV[11])

local q = qkey(mode, region)
local now = now_ms()
local snow = int(now)
local state, deadline
if accept_ms > 0 then
  state, deadline = 'accepting', int(now + accept_ms)
else
  state, deadline = 'allocating', int(now + alloc_ms)
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
for j = 1, M do
  local id = ids[j]
  if members[j] == id then
    local rec = redis.call('HGET', tqkey(id), id)
    if rec then
      local t = unpack_queued(rec)
      if t.m == mode and (t.g or '') == region then members[j] = member(id, t) end
    end
  end
end

-- 2. One membership check for all of them (false: not in the queue).
local scores = chunked('ZMSCORE', q, members, M)

-- 3. All-or-nothing per proposal; a ticket claimed earlier in this call is taken. (Lists
--    are appended through explicit counters: the # operator walks the table.) The claimed
--    proposals are kept as ranges of the columns, with their session.
local results, pending, removed, deadlines, sessions = {}, {}, {}, {}, {}
local elsewhere = {}  -- region -> deadlines of sessions in another region than the queue's
local done_sid, done_first, done_last = {}, {}, {}
local np, nr, nd, ns, nc = 0, 0, 0, 0, 0
-- Every session of this call shares state, mode, region and deadline (PENDING_SESSIONS).
local dl = accept_ms > 0 and deadline or ''
local session_head = state .. '|' .. mode .. '|' .. region .. '|' .. dl .. '|'
local tail = '|' .. snow
local taken = {}
local last = 0
for k = 1, P do
  local first = last + 1
  last = last + (same_count or tonumber(counts[k]))
  local ok = true
  for j = first, last do
    local id = ids[j]
    if not scores[j] or taken[id] then ok = false; break end
    taken[id] = k
  end
  if ok then
    local sid = sids[k]
    local head = sid .. '|'
    for j = first, last do
      pending[np + 1] = ids[j]
      pending[np + 2] = head .. scores[j] .. tail
      np = np + 2
      nr = nr + 1
      removed[nr] = members[j]
    end
    nc = nc + 1
    done_sid[nc], done_first[nc], done_last[nc] = sid, first, last
    sessions[ns + 1] = sid
    local extra = extras and extras[k] or ''
    if extra == '' then
      sessions[ns + 2] = session_head .. teams[k]
      deadlines[nd + 1] = deadline
      deadlines[nd + 2] = sid
      nd = nd + 2
    else
      local chosen, mx = string.match(extra, '^([^|]*)|(.*)$')
      if chosen == '' then chosen = region end
      sessions[ns + 2] = state .. '|' .. mode .. '|' .. chosen .. '|' .. dl .. '|' .. teams[k] .. '|' .. mx
      -- A session of another region than the queue's (the rules chose it) waits in that
      -- region's line for a server.
      if chosen == region then
        deadlines[nd + 1] = deadline
        deadlines[nd + 2] = sid
        nd = nd + 2
      else
        local list = elsewhere[chosen]
        if list == nil then list = {}; elsewhere[chosen] = list end
        list[#list + 1] = deadline
        list[#list + 1] = sid
      end
    end
    ns = ns + 2
    results[k] = ''
  else
    -- Undo this proposal's marks, then name what failed (rare: the slow path is fine).
    local failed, seen = {}, {}
    for j = first, last do
      local id = ids[j]
      if taken[id] == k then taken[id] = nil end
    end
    for j = first, last do
      local id = ids[j]
      if not scores[j] or taken[id] or seen[id] then failed[#failed + 1] = id end
      seen[id] = true
    end
    results[k] = table.concat(failed, ',')
  end
end

-- 4. Batched writes; then one event per claimed ticket, in claim order, and one notice.
if nr > 0 then
  chunked('ZREM', q, removed, nr)
  chunked('HSET', CLAIMED, pending, np)
  chunked('HSET', PENDING_SESSIONS, sessions, ns)
  -- The deadlines: ready checks in one set; sessions that wait for a server in their
  -- region's line (alkey), each region recorded for the scripts that walk the lines.
  if accept_ms > 0 then
    for _, list in pairs(elsewhere) do
      for i = 1, #list do deadlines[nd + i] = list[i] end
      nd = nd + #list
    end
    if nd > 0 then chunked('ZADD', ACCEPTING, deadlines, nd) end
  else
    if nd > 0 then chunked('ZADD', alkey(region), deadlines, nd) end
    for chosen, list in pairs(elsewhere) do chunked('ZADD', alkey(chosen), list, #list) end
  end
  local regions = { region }
  for chosen in pairs(elsewhere) do regions[#regions + 1] = chosen end
  redis.call('SADD', ALLOCATING_REGIONS, unpack(regions))
  add_count('m:' .. mode, nr)
  -- Counted at claim time: the tickets' hashes are rewritten later, lazily (load()).
  count_outcome(mode, 'matched', nr)
  local partial = nr < M
  local claimed = partial and {} or ids  -- all of them, when every proposal was claimed
  local n = 0
  for c = 1, nc do
    local sid = done_sid[c]
    for j = done_first[c], done_last[c] do
      local id = ids[j]
      emit_untrimmed('ticket.matched', id, sid, mode, '{}')
      if partial then n = n + 1; claimed[n] = id end
    end
  end
  trim_events()
  publish(claimed)
end
return results
