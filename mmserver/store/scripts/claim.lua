-- ARGV: mode, region, accept_timeout_ms (0: no ready check), allocation_timeout_ms,
--       then pairs (session_id, teams) where teams is 'm,m;m,m' per team, each m either a
--       queue member (id|mmr|size|enqueued_ms, as the caller read it) or a bare ticket id.
-- Each proposal is all-or-nothing: every ticket must still be in this queue (its member
-- present: a member exists exactly while its ticket is queued there), else nothing of it
-- is claimed. Returns one entry per proposal: '' when claimed, otherwise the
-- comma-separated ids that were no longer queued here.
-- Written for speed (a tick claims tens of thousands of tickets): per proposal one ZMSCORE
-- and one HSET, per ticket one HINCRBY and one HSET; queue and deadline sets batched.
local mode, region = ARGV[1], ARGV[2]
local accept_ms, alloc_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local q = qkey(mode, region)
local now = now_ms()
local snow = int(now)
local results, changed, removed, deadlines = {}, {}, {}, {}
local state, deadline_key, deadline
if accept_ms > 0 then
  state, deadline_key, deadline = 'accepting', ACCEPTING, int(now + accept_ms)
else
  state, deadline_key, deadline = 'allocating', ALLOCATING, int(now + alloc_ms)
end
local claimed_tickets = 0
for i = 5, #ARGV, 2 do
  local sid, teams = ARGV[i], ARGV[i + 1]
  local members = split(teams, ',;')
  local ids, failed, seen = {}, {}, {}
  for j, m in ipairs(members) do
    local id = string.match(m, '^[^|]+')
    if id == m then
      -- A bare id: build its member from the ticket (nil if it is not queued here).
      local t = redis.call('HMGET', tkey(id), 's', 'm', 'g', 'r', 'n', 'e')
      if t[1] == 'queued' and t[2] == mode and (t[3] or '') == region then
        members[j] = id .. '|' .. t[4] .. '|' .. t[5] .. '|' .. t[6]
      end
    end
    ids[j] = id
    if seen[id] then failed[#failed + 1] = id; members[j] = id end
    seen[id] = true
  end
  local scores = redis.call('ZMSCORE', q, unpack(members))
  if #failed == 0 then
    for j, id in ipairs(ids) do
      if not scores[j] then failed[#failed + 1] = id end
    end
  end
  if #failed > 0 then
    results[#results + 1] = table.concat(failed, ',')
  else
    local ticket_ids = teams
    for j, id in ipairs(ids) do
      local key = tkey(id)
      redis.call('HINCRBY', key, 'v', 1)
      redis.call('HSET', key, 's', 'matched', 'x', sid, 'd', scores[j], 'u', snow)
      removed[#removed + 1] = members[j]
      changed[#changed + 1] = id
    end
    -- teams as ticket ids only: drop each member's '|...' tail
    ticket_ids = string.gsub(teams, '|[^,;]*', '')
    local fields = { 'st', state, 'md', mode, 'rg', region, 'tk', ticket_ids, 'c', #ids, 'n', 0 }
    if accept_ms > 0 then fields[#fields + 1] = 'dl'; fields[#fields + 1] = deadline end
    redis.call('HSET', skey(sid), unpack(fields))
    deadlines[#deadlines + 1] = deadline
    deadlines[#deadlines + 1] = sid
    claimed_tickets = claimed_tickets + #ids
    results[#results + 1] = ''
  end
end
-- Batched writes, in chunks that stay well inside Lua's stack limit for unpack.
for i = 1, #removed, 1000 do
  redis.call('ZREM', q, unpack(removed, i, math.min(i + 999, #removed)))
end
for i = 1, #deadlines, 1000 do
  redis.call('ZADD', deadline_key, unpack(deadlines, i, math.min(i + 999, #deadlines)))
end
if claimed_tickets > 0 then redis.call('HINCRBY', COUNTS, 'm:' .. mode, claimed_tickets) end
publish(changed)
return results
