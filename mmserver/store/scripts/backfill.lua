-- ARGV: match_id, backfill_id, ttl_ms, team_size, role counts ('tank=1,dps=3', '' without
--       roles), slots ('team:role:count,...', merged and checked against the mode by the
--       caller). A game server asks for players to fill open places of its match.
-- Refused, changing nothing, when the match is not assigned or when a team would be over-full:
-- its players + the slots already open for it + those asked for must fit the team size, and,
-- per role, the role's count. Open backfills are thereby bounded by the match's open places.
-- Returns {'ok', backfill_id, created_ms, expires_ms}, {'notfound'}, {'state', state} or
-- {'full', team, role ('' for the team as a whole), players, open, asked, room}.
local mid, bid, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local team_size = tonumber(ARGV[4])
local s = load_session(mid)
if s.st == nil then return { 'notfound' } end
if s.st ~= 'assigned' then return { 'state', s.st } end
local role_count = {}
for _, entry in ipairs(split(ARGV[5], ',')) do
  local role, n = string.match(entry, '^([^=]+)=(%d+)$')
  role_count[role] = tonumber(n)
end
local asked = parse_slots(ARGV[6])

-- Per team (0-based) and per role ('' = the team as a whole): players now, slots open, asked.
local players, open, wanted = {}, {}, {}
local function add(t, team, role, n)
  local key = team .. ':' .. role
  t[key] = (t[key] or 0) + n
end
local roles = {}
if s.mx and s.mx ~= '' then
  local ok, doc = pcall(cjson.decode, s.mx)
  if ok and type(doc) == 'table' and type(doc.r) == 'table' then roles = doc.r end
end
for team, members in ipairs(fields(s.pl, ';')) do
  for _, p in ipairs(split(members, ',')) do
    add(players, team - 1, '', 1)
    if roles[p] then add(players, team - 1, roles[p], 1) end
  end
end
for _, other in ipairs(split(s.bf, ',')) do
  local b = hgetall(bfkey(other))
  if b.st == 'open' then
    for _, slot in ipairs(parse_slots(b.sl)) do
      add(open, slot.team, '', slot.count)
      if slot.role ~= '' then add(open, slot.team, slot.role, slot.count) end
    end
  end
end
for _, slot in ipairs(asked) do
  add(wanted, slot.team, '', slot.count)
  if slot.role ~= '' then add(wanted, slot.team, slot.role, slot.count) end
end
for key, n in pairs(wanted) do
  local team, role = string.match(key, '^(%d+):(.*)$')
  local room = team_size
  if role ~= '' then room = role_count[role] or 0 end
  local here, waiting = players[key] or 0, open[key] or 0
  if here + waiting + n > room then
    return { 'full', team, role, here, waiting, n, room }
  end
end

local now = now_ms()
local expires = now + ttl
redis.call('HSET', bfkey(bid), 'm', mid, 'o', s.md, 'g', s.rg or '', 'sl', pack_slots(asked),
           'c', int(now), 'x', int(expires), 'st', 'open')
redis.call('ZADD', bfokey(s.md), int(now), bid)
redis.call('ZADD', BACKFILL_EXPIRY, int(expires), bid)
local listed = split(s.bf, ',')
listed[#listed + 1] = bid
redis.call('HSET', skey(mid), 'bf', table.concat(listed, ','))
local slots = {}
for _, slot in ipairs(asked) do
  local entry = { team = slot.team, count = slot.count }
  if slot.role ~= '' then entry.role = slot.role end
  slots[#slots + 1] = entry
end
emit('backfill.created', nil, mid, s.md, cjson.encode({ backfill_id = bid, slots = slots,
                                                        expires_at = expires / 1000 }))
return { 'ok', bid, int(now), int(expires) }
