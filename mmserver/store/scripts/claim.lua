-- ARGV: mode, region, accept_timeout_ms (0: no ready check), allocation_timeout_ms,
--       then pairs (session_id, teams) where teams is 'm,m;m,m' per team, each m either a
--       queue member (id|mmr|size|enqueued_ms, as the caller read it) or a bare ticket id.
-- Each proposal is all-or-nothing: every ticket must still be in this queue (its member
-- present: a member exists exactly while its ticket is queued there), else nothing of it
-- is claimed. Returns one entry per proposal: '' when claimed, otherwise the
-- comma-separated ids that were no longer queued here.
-- Written for speed (a tick claims tens of thousands of tickets): one HSET per proposal
-- (its session); membership checks, the tickets' new state (CLAIMED, see load() in
-- lib.lua), the queue and the deadline set are all batched commands.
local mode, region = ARGV[1], ARGV[2]
local accept_ms, alloc_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local q = qkey(mode, region)
local now = now_ms()
local snow = int(now)
local state, deadline_key, deadline
if accept_ms > 0 then
  state, deadline_key, deadline = 'accepting', ACCEPTING, int(now + accept_ms)
else
  state, deadline_key, deadline = 'allocating', ALLOCATING, int(now + alloc_ms)
end

local function chunked(command, key, list)
  -- Chunks stay well inside Lua's stack limit for unpack; 1000 keeps pairs together.
  local out = {}
  for i = 1, #list, 1000 do
    local part = redis.call(command, key, unpack(list, i, math.min(i + 999, #list)))
    if type(part) == 'table' then
      for _, v in ipairs(part) do out[#out + 1] = v end
    end
  end
  return out
end

-- 1. Every proposal's members, in one flat list.
local proposals, all_members = {}, {}
for i = 5, #ARGV, 2 do
  local members = split(ARGV[i + 1], ',;')
  local ids = {}
  for j, m in ipairs(members) do
    local id = string.match(m, '^[^|]+')
    if id == m then
      -- A bare id: build its member from the ticket (left bare if it is not queued here).
      local rec = redis.call('HGET', tqkey(id), id)
      if rec then
        local t = unpack_queued(rec)
        if t.m == mode and (t.g or '') == region then members[j] = member(id, t) end
      end
    end
    ids[j] = id
    all_members[#all_members + 1] = members[j]
  end
  proposals[#proposals + 1] = { sid = ARGV[i], teams = ARGV[i + 1], ids = ids, members = members,
                                first = #all_members - #members }
end

-- 2. One membership check for all of them (false: not in the queue).
local scores = chunked('ZMSCORE', q, all_members)

-- 3. All-or-nothing per proposal; a ticket claimed earlier in this call is taken.
local results, changed, removed, deadlines, pending = {}, {}, {}, {}, {}
local taken = {}
local claimed_tickets = 0
for _, p in ipairs(proposals) do
  local failed, seen = {}, {}
  for j, id in ipairs(p.ids) do
    if not scores[p.first + j] or taken[id] or seen[id] then failed[#failed + 1] = id end
    seen[id] = true
  end
  if #failed > 0 then
    results[#results + 1] = table.concat(failed, ',')
  else
    for j, id in ipairs(p.ids) do
      taken[id] = true
      pending[#pending + 1] = id
      pending[#pending + 1] = p.sid .. '|' .. scores[p.first + j] .. '|' .. snow
      removed[#removed + 1] = p.members[j]
      changed[#changed + 1] = id
    end
    -- teams as ticket ids only: drop each member's '|...' tail
    local ticket_ids = string.gsub(p.teams, '|[^,;]*', '')
    local fields = { 'st', state, 'md', mode, 'rg', region, 'tk', ticket_ids, 'c', #p.ids, 'n', 0 }
    if accept_ms > 0 then fields[#fields + 1] = 'dl'; fields[#fields + 1] = deadline end
    redis.call('HSET', skey(p.sid), unpack(fields))
    deadlines[#deadlines + 1] = deadline
    deadlines[#deadlines + 1] = p.sid
    claimed_tickets = claimed_tickets + #p.ids
    results[#results + 1] = ''
  end
end

-- 4. Batched writes.
chunked('ZREM', q, removed)
chunked('HSET', CLAIMED, pending)
chunked('ZADD', deadline_key, deadlines)
if claimed_tickets > 0 then redis.call('HINCRBY', COUNTS, 'm:' .. mode, claimed_tickets) end
publish(changed)
return results
