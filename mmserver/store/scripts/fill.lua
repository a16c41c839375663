-- ARGV: mode, region (the queue's, '' for none), team_size, salt, retention_s, N, then N
--       fills of 5 values: backfill_id, ticket_id, queue member (as the tick read it), team
--       (0-based), roles ('' or one role per player of the ticket, in its player order).
-- Each fill is all-or-nothing and re-checks everything the tick saw: the backfill still open,
-- of this mode and not expired; its match still assigned; the slots still open in that team
-- (and the team not full); the ticket still queued in this queue (its member present, as
-- claim.lua checks it). Then the ticket leaves the queue and is assigned to the match's
-- server with a join token (as allocate.lua gives them), the match's ticket and player lists
-- grow, its version goes up, the backfill's slots go down (filled when none is left), and the
-- counts move: a ticket is never filled twice nor into two matches, and a crash strands none.
-- Returns one entry per fill: '' when filled, else why not ('backfill', 'expired', 'match',
-- 'slots', 'ticket').
local mode, region = ARGV[1], ARGV[2]
local team_size, salt, retention = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local q = qkey(mode, region)
local now = now_ms()
local snow = int(now)
local changed, results, roster = {}, {}, {}

local function fill(bid, id, m, team, roles)
  local b = hgetall(bfkey(bid))
  if b.st ~= 'open' or b.o ~= mode then return 'backfill' end
  if tonumber(b.x) <= now then return 'expired' end
  local mid = b.m
  local s = load_session(mid)
  if s.st ~= 'assigned' then return 'match' end
  if not redis.call('ZSCORE', q, m) then return 'ticket' end
  local t = load(id)
  if t.s ~= 'queued' or t.m ~= mode or (t.g or '') ~= region or member(id, t) ~= m then return 'ticket' end
  local players = ticket_players(t)
  local given = split(roles, ',')
  if #given > 0 and #given ~= #players then return 'slots' end
  local need = {}
  for i = 1, #players do
    local role = given[i] or ''
    need[role] = (need[role] or 0) + 1
  end
  local slots = parse_slots(b.sl)
  for role, k in pairs(need) do
    local have = 0
    for _, slot in ipairs(slots) do
      if slot.team == team and slot.role == role then have = have + slot.count end
    end
    if have < k then return 'slots' end
  end
  local teams, tk = fields(s.pl, ';'), fields(s.tk, ';')
  if team + 1 > #teams or team + 1 > #tk then return 'slots' end
  if #split(teams[team + 1], ',') + #players > team_size then return 'slots' end

  -- Everything holds: the fill happens, whole.
  for role, k in pairs(need) do
    for _, slot in ipairs(slots) do
      if k > 0 and slot.team == team and slot.role == role then
        local used = math.min(k, slot.count)
        slot.count = slot.count - used
        k = k - used
      end
    end
  end
  redis.call('ZREM', q, m)
  t.s, t.x, t.v, t.u = 'assigned', mid, tostring(tonumber(t.v) + 1), snow
  -- The join token, derived as allocate.lua derives it (fresh salt per call).
  t.j = redis.sha1hex(salt .. id)
  write_record(id, t)
  local joined = split(teams[team + 1], ',')
  for _, p in ipairs(players) do joined[#joined + 1] = p end
  teams[team + 1] = table.concat(joined, ',')
  local ids = split(tk[team + 1], ',')
  ids[#ids + 1] = id
  tk[team + 1] = table.concat(ids, ',')
  s.pl, s.tk = table.concat(teams, ';'), table.concat(tk, ';')
  redis.call('HSET', skey(mid), 'tk', s.tk, 'pl', s.pl)
  for _, other in ipairs(session_ticket_ids(s)) do
    if other ~= id then roster[#roster + 1] = other end  -- their assignment shows the roster
  end
  redis.call('HINCRBY', skey(mid), 'c', 1)
  if #given > 0 then
    -- Each new player's role joins the line-up the view and the roster show.
    local doc = {}
    if s.mx and s.mx ~= '' then
      local ok, decoded = pcall(cjson.decode, s.mx)
      if ok and type(decoded) == 'table' then doc = decoded end
    end
    if type(doc.r) ~= 'table' then doc.r = {} end
    for i, p in ipairs(players) do doc.r[p] = given[i] end
    s.mx = cjson.encode(doc)
    redis.call('HSET', skey(mid), 'mx', s.mx)
  end
  bump_version(mid, s)
  add_count('a:' .. mode, 1)
  count_outcome(mode, 'assigned', 1)
  emit('ticket.assigned', id, mid, mode, backfill_data(bid))
  b.sl = pack_slots(slots)
  if b.sl == '' then
    end_backfill(bid, b, 'filled', '', retention)
    redis.call('HSET', bfkey(bid), 'sl', '')
    emit('backfill.filled', nil, mid, mode, backfill_data(bid))
  else
    redis.call('HSET', bfkey(bid), 'sl', b.sl)
  end
  changed[#changed + 1] = id
  return ''
end

for i = 0, n - 1 do
  local at = 6 + i * 5
  results[#results + 1] = fill(ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], tonumber(ARGV[at + 4]), ARGV[at + 5])
end
publish(changed)
publish_views(roster)
return results
