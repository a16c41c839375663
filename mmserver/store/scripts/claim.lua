-- ARGV: mode, region, accept_timeout_ms (0: no ready check), allocation_timeout_ms,
--       then pairs (session_id, teams) where teams is 'id,id;id,id' (ticket ids per team).
-- Each proposal is all-or-nothing: every ticket must still be queued in this queue, else
-- nothing of it is claimed. Returns one entry per proposal: '' when claimed, otherwise the
-- comma-separated ids that were no longer queued here.
local mode, region = ARGV[1], ARGV[2]
local accept_ms, alloc_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local q = qkey(mode, region)
local now = now_ms()
local results, changed = {}, {}
local claimed_tickets = 0
for i = 5, #ARGV, 2 do
  local sid, teams = ARGV[i], ARGV[i + 1]
  local ids = split(teams, ',;')
  local tickets, failed = {}, {}
  local seen = {}
  for j, id in ipairs(ids) do
    local t = hgetall(tkey(id))
    local ok = not seen[id] and t.s == 'queued' and t.m == mode and (t.g or '') == region
    local score = ok and redis.call('ZSCORE', q, member(id, t))
    if not score then failed[#failed + 1] = id end
    seen[id] = true
    tickets[j] = { t = t, score = score }
  end
  if #failed > 0 or redis.call('EXISTS', skey(sid)) == 1 then
    results[#results + 1] = (#failed > 0) and table.concat(failed, ',') or sid
  else
    local players = {}
    for j, id in ipairs(ids) do
      local t = tickets[j].t
      redis.call('ZREM', q, member(id, t))
      redis.call('HSET', tkey(id), 's', 'matched', 'x', sid, 'd', tickets[j].score)
      touch(id, now)
      for _, p in ipairs(ticket_players(t)) do players[#players + 1] = p end
      changed[#changed + 1] = id
    end
    local fields = { 'md', mode, 'rg', region, 'tk', teams, 'pl', table.concat(players, ','),
                     'c', #ids, 'n', 0 }
    if accept_ms > 0 then
      fields[#fields + 1] = 'st'; fields[#fields + 1] = 'accepting'
      fields[#fields + 1] = 'dl'; fields[#fields + 1] = int(now + accept_ms)
      redis.call('ZADD', ACCEPTING, int(now + accept_ms), sid)
    else
      fields[#fields + 1] = 'st'; fields[#fields + 1] = 'allocating'
      redis.call('ZADD', ALLOCATING, int(now + alloc_ms), sid)
    end
    redis.call('HSET', skey(sid), unpack(fields))
    claimed_tickets = claimed_tickets + #ids
    results[#results + 1] = ''
  end
end
if claimed_tickets > 0 then redis.call('HINCRBY', COUNTS, 'm:' .. mode, claimed_tickets) end
publish(changed)
return results
