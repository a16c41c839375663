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

-- A ticket out of the queue (every other state) is one string at tkey(id), read with one GET
-- and written with one SET: s|x|c|d|j|l|r|n|e|v|u|k|m|g|p|y|a|w (status, session or match,
-- accepted '1', TTL deadline kept while matched, join token, players who left (lf), then the
-- queued record's fields, then the terminal reason). Empty means absent. Only the reason
-- (last) may hold '|'. Table fields starting with '@' are markers of the call (never stored).
local TICKET_PATTERN = '^' .. string.rep('([^|]*)|', 17) .. '(.*)$'

local function unpack_ticket(rec)
  local s, x, c, d, j, l, r, n, e, v, u, k, m, g, p, y, a, w = string.match(rec, TICKET_PATTERN)
  local t = { s = s, r = r, n = n, e = e, v = v, k = k, m = m, p = p }
  if x ~= '' then t.x = x end
  if c ~= '' then t.c = c end
  if d ~= '' then t.d = d end
  if j ~= '' then t.j = j end
  if l ~= '' then t.lf = l end
  if u ~= '' then t.u = u end
  if g ~= '' then t.g = g end
  if y ~= '' then t.y = y end
  if a ~= '' then t.a = a end
  if w ~= '' then t.w = w end
  return t
end

local function pack_ticket(t)
  return table.concat({ t.s, t.x or '', t.c or '', t.d or '', t.j or '', t.lf or '', t.r, t.n, t.e,
                        t.v, t.u or '', t.k, t.m, t.g or '', t.p, t.y or '', t.a or '', t.w or '' }, '|')
end

-- The ticket's record as a table ({} if it has none: queued, or unknown). A hash there is a
-- ticket written before this layout (the same field names): read as it is, replaced by a
-- record at its next write (docs/DEPLOY.md, "Upgrading").
local function read_ticket(id)
  local rec = redis.pcall('GET', tkey(id))
  if type(rec) == 'string' then return unpack_ticket(rec) end
  if type(rec) == 'table' and rec.err then return hgetall(tkey(id)) end
  return {}
end

-- Rewrites a ticket that has its record (t loaded in this call, changed in place). Its
-- expiry, if any, is kept.
local function save_ticket(id, t)
  redis.call('SET', tkey(id), pack_ticket(t), 'KEEPTTL')
end

-- A ticket that leaves the queue gets its record (tkey), written from the table, and loses
-- its queued one: at every instant a ticket is in exactly one of the two places.
local function write_record(id, t)
  redis.call('HDEL', tqkey(id), id)
  redis.call('SET', tkey(id), pack_ticket(t))
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
