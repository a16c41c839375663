-- The record codec: how a ticket, a queue member, a session's ticket list and a backfill's
-- slots are spelled in Redis, and the functions that read and write those spellings.

-- A queued ticket's record in its bucket: r|n|e|v|u|k|m|g|p|y|a (mmr, size, enqueued ms,
-- version, updated ms or '', token hash, mode, region or '', player, party or '', the match
-- profile or ''). It starts with the queue member's tail (id|r|n|e). No field can hold '|'
-- (refused at creation). The profile (attributes, latencies, roles: JSON written by
-- store/profiles.py) is carried, never read, here. Records written before profiles existed
-- have ten fields.
local function unpack_queued(rec)
  local r, n, e, v, u, k, m, g, p, y, a = string.match(rec,
    '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  if r == nil then
    r, n, e, v, u, k, m, g, p, y = string.match(rec,
      '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  end
  local t = { s = 'queued', r = r, n = n, e = e, v = v, k = k, m = m, p = p, ['@q'] = true }
  if u ~= '' then t.u = u end
  if g ~= '' then t.g = g end
  if y ~= '' then t.y = y end
  if a ~= nil and a ~= '' then t.a = a end
  return t
end

local function pack_queued(t)
  return table.concat({ t.r, t.n, t.e, t.v, t.u or '', t.k, t.m, t.g or '', t.p, t.y or '', t.a or '' }, '|')
end

-- A ticket that leaves the queue gets a hash of its own (tkey), built from the table and
-- without the queued record: at every instant a ticket is in exactly one of the two places.
-- Fields starting with '@' are markers of this call (never stored).
local function write_hash(id, t)
  local fields = {}
  for f, v in pairs(t) do
    if string.byte(f) ~= 64 then fields[#fields + 1] = f; fields[#fields + 1] = v end
  end
  redis.call('HDEL', tqkey(id), id)
  redis.call('HSET', tkey(id), unpack(fields))
  t['@q'], t['@w'] = nil, nil
end

-- The queue member carries the matcher's inputs: id|mmr|size|enqueued_ms, then |profile when
-- the ticket has one. It is rebuilt from the ticket's own fields, which hold exactly the
-- strings it was built from.
local function member(id, t)
  if t.a then return id .. '|' .. t.r .. '|' .. t.n .. '|' .. t.e .. '|' .. t.a end
  return id .. '|' .. t.r .. '|' .. t.n .. '|' .. t.e
end

local function is_live(status)
  return status == 'queued' or status == 'matched' or status == 'assigned'
end

local function ticket_players(t)
  local out = { t.p }
  for _, p in ipairs(split(t.y, ',')) do out[#out + 1] = p end
  return out
end

-- The players of a ticket still in its match: a party member who left is in the ticket's lf.
local function present_players(t)
  if not t.lf then return ticket_players(t) end
  local left = {}
  for _, p in ipairs(split(t.lf, ',')) do left[p] = true end
  local out = {}
  for _, p in ipairs(ticket_players(t)) do
    if not left[p] then out[#out + 1] = p end
  end
  return out
end

local function session_ticket_ids(s) return split(s.tk, ',;') end

local function parse_slots(text)
  local out = {}
  for _, entry in ipairs(split(text, ',')) do
    local team, role, count = string.match(entry, '^(%d+):([^:]*):(%d+)$')
    if team then out[#out + 1] = { team = tonumber(team), role = role, count = tonumber(count) } end
  end
  return out
end

local function pack_slots(slots)
  local parts = {}
  for _, slot in ipairs(slots) do
    if slot.count > 0 then parts[#parts + 1] = int(slot.team) .. ':' .. slot.role .. ':' .. int(slot.count) end
  end
  return table.concat(parts, ',')
end
