-- Shared prelude, prepended to every script (Redis 6.2 has no functions library).
-- Key names come from mmserver/store/keys.py (LUA_NAMES, written before this file). Scripts touch keys they compute themselves, which
-- is fine on a single Redis or behind Sentinel (not on Redis Cluster).
-- Effects replication (the default since Redis 5): TIME may be called before writes.
redis.replicate_commands()

-- Per-mode ticket TTL (ms), written by create: a queued ticket does not carry its own.
local DEFAULT_TTL_MS = 300000
-- Ticket outcomes, fleet-wide and monotonic: field '{mode}:{outcome}' -> tickets that made
-- that transition (see count_outcome).
-- Server address -> the id holding it: one address is one server.
-- The ids of the static servers seeded from the configuration.
-- Assigned match -> when its mode's max_match_s ends it (ms).
-- Claimed tickets whose hash has not been rewritten yet: ticket id -> 'session|ttl_deadline|claimed_at'.
-- Sessions created by a claim and not written into their hash yet: session id ->
-- 'state|mode|region|accept_deadline|teams' (see load_session).

local function tkey(id) return TICKET_PREFIX .. id end
-- A queued ticket is one field of a bucket hash (small buckets stay listpack-encoded, a few
-- bytes of overhead per entry instead of a key and a hash of its own). Ticket ids are random,
-- so their first two characters spread them over 4096 buckets.
local function tqkey(id) return QUEUED_PREFIX .. string.sub(id, 1, 2) end
-- The player index, in 4096 buckets by the player id's SHA-1 (player ids are not random).
local function plkey(player) return PLAYERS_PREFIX .. string.sub(redis.sha1hex(player), 1, 3) end
local function skey(id) return SESSION_PREFIX .. id end
local function svkey(id) return SERVER_PREFIX .. id end
local function qkey(mode, region) return QUEUE_PREFIX .. mode .. ':' .. region end
-- Free servers by region: FREE holds servers without a region, FREE:{region} the others.
local function freekey(region)
  if region == nil or region == '' then return FREE end
  return FREE .. ':' .. region
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers up to 2^53 print exactly with %d (tostring would use %.14g).
local function int(n) return string.format('%d', n) end

-- The event log (SPEC "Events (v2)"): the script that makes a transition appends its event in
-- the same call, so an event exists exactly when its transition happened (keys.py, EVENT_LOG).
-- Every entry has the same fields in the same order, which Redis stores once per block:
-- y type, t ticket id, m match id, o mode ('' when the event has none), d data (JSON object).
-- MAXLEN ~ keeps the length bound at almost no cost; the age bound is applied each tick.
local function emit(kind, ticket, match, mode, data)
  redis.call('XADD', EVENT_LOG, 'MAXLEN', '~', EVENT_MAX_LEN, '*',
             'y', kind, 't', ticket or '', 'm', match or '', 'o', mode or '', 'd', data or '{}')
end

-- A reason (or any string) as event data: cjson escapes what needs escaping.
local function reason_data(reason)
  return cjson.encode({ reason = reason })
end

local function split(s, sep)
  local out = {}
  if s == nil or s == false or s == '' then return out end
  for part in string.gmatch(s, '[^' .. sep .. ']+') do out[#out + 1] = part end
  return out
end

-- Fields of a string split on a one-character separator, empty ones kept: a team emptied by
-- releases still counts ('a;;b' is three teams).
local function fields(s, sep)
  local out = {}
  if s == nil or s == false or s == '' then return out end
  local start = 1
  while true do
    local i = string.find(s, sep, start, true)
    if not i then out[#out + 1] = string.sub(s, start); break end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + 1
  end
  return out
end

local function hgetall(key)
  local flat = redis.call('HGETALL', key)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

-- A claim records its sessions in PENDING_SESSIONS (one batched HSET) instead of one hash
-- each; the first script that loads one writes its hash. peek_session reads without writing.
local function peek_session(sid)
  local pending = redis.call('HGET', PENDING_SESSIONS, sid)
  if not pending then return nil end
  -- state|mode|region|deadline|teams, then |extras (roles and rule-chosen attributes, JSON)
  -- for a mode with rules. Teams never hold '|'.
  local st, md, rg, dl, tk, mx = string.match(pending, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  if st == nil then
    st, md, rg, dl, tk = string.match(pending, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  end
  local c = 0
  for _ in string.gmatch(tk, '[^,;]+') do c = c + 1 end
  local s = { st = st, md = md, rg = rg, tk = tk, c = tostring(c), n = '0' }
  if dl ~= '' then s.dl = dl end
  if mx ~= nil and mx ~= '' then s.mx = mx end
  return s
end

-- The session's fields ({} if none), its hash written first if the claim left it pending.
local function load_session(sid)
  local s = hgetall(skey(sid))
  if s.st ~= nil then return s end
  local p = peek_session(sid)
  if p == nil then return s end
  local fields = {}
  for f, v in pairs(p) do fields[#fields + 1] = f; fields[#fields + 1] = v end
  redis.call('HSET', skey(sid), unpack(fields))
  redis.call('HDEL', PENDING_SESSIONS, sid)
  return p
end

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
local function write_hash(id, t)
  local fields = {}
  for f, v in pairs(t) do
    if f ~= '@q' then fields[#fields + 1] = f; fields[#fields + 1] = v end
  end
  redis.call('HDEL', tqkey(id), id)
  redis.call('HSET', tkey(id), unpack(fields))
  t['@q'] = nil
end

local function ttl_ms(mode)
  return tonumber(redis.call('HGET', TTLS, mode)) or DEFAULT_TTL_MS
end

-- A claim writes its tickets' new state into CLAIMED in one batched HSET instead of
-- rewriting every ticket (what makes a tick claim 100k tickets fast); the first script that
-- loads the ticket afterwards applies it. Every script loads tickets through here, so none
-- ever sees a claimed ticket as queued. Returns the ticket's fields ({} if none); a ticket
-- still queued has '@q' set (its fields came from its bucket record).
local function load(id)
  local t = hgetall(tkey(id))
  if t.s ~= nil then return t end
  local rec = redis.call('HGET', tqkey(id), id)
  if not rec then return t end
  t = unpack_queued(rec)
  local pending = redis.call('HGET', CLAIMED, id)
  if pending then
    local sid, deadline, at = string.match(pending, '^([^|]+)|([^|]+)|([^|]+)$')
    t.s, t.x, t.d, t.u, t.v = 'matched', sid, deadline, at, tostring(tonumber(t.v) + 1)
    write_hash(id, t)
    redis.call('HDEL', CLAIMED, id)
  end
  return t
end

-- Status only (no claim applied: a claimed ticket is live either way).
local function status_of(id)
  local s = redis.call('HGET', tkey(id), 's')
  if s then return s end
  if redis.call('HEXISTS', tqkey(id), id) == 1 then return 'queued' end
  return nil
end

-- Counted by the script that makes the transition, in the same atomic call: a count is
-- exactly the tickets that moved, whichever replica moved them, and an idempotent repeat
-- (which moves nothing) counts nothing. One HINCRBY per mode and outcome a script touches.
local function count_outcome(mode, outcome, n)
  if n > 0 then redis.call('HINCRBY', OUTCOMES, mode .. ':' .. outcome, n) end
end

local function is_live(status)
  return status == 'queued' or status == 'matched' or status == 'assigned'
end

-- The queue member carries the matcher's inputs: id|mmr|size|enqueued_ms, then |profile when
-- the ticket has one. It is rebuilt from the ticket's own fields, which hold exactly the
-- strings it was built from.
local function member(id, t)
  if t.a then return id .. '|' .. t.r .. '|' .. t.n .. '|' .. t.e .. '|' .. t.a end
  return id .. '|' .. t.r .. '|' .. t.n .. '|' .. t.e
end

local function ticket_players(t)
  local out = { t.p }
  for _, p in ipairs(split(t.y, ',')) do out[#out + 1] = p end
  return out
end

local function touch(id, now)
  redis.call('HINCRBY', tkey(id), 'v', 1)
  redis.call('HSET', tkey(id), 'u', int(now))
end

-- Terminal: release the player index at once, keep the ticket readable for `retention` s.
local function make_terminal(id, t, now, status, reason, retention)
  local key = tkey(id)
  if t['@q'] then
    t.s, t.w, t.v, t.u = status, reason, tostring(tonumber(t.v) + 1), int(now)
    write_hash(id, t)
  else
    -- One HSET and one HDEL (t was loaded in this call: its version is the current one).
    t.s, t.w, t.v, t.u = status, reason, tostring(tonumber(t.v) + 1), int(now)
    redis.call('HSET', key, 's', status, 'w', reason, 'v', t.v, 'u', t.u)
    -- (t.x stays in the table: the event below names the session the ticket left.)
    if status ~= 'finished' then
      redis.call('HDEL', key, 'c', 'd', 'x')
    else
      redis.call('HDEL', key, 'c', 'd')
    end
  end
  for _, p in ipairs(ticket_players(t)) do
    local bucket = plkey(p)
    if redis.call('HGET', bucket, p) == id then redis.call('HDEL', bucket, p) end
  end
  redis.call('EXPIRE', key, retention)
  emit('ticket.' .. status, id, t.x, t.m, reason_data(reason))
end

-- Back to its queue with its original enqueue time (in the member); the score is its TTL
-- deadline, kept from before the match (refreshed by reads while matched). The ticket's
-- hash becomes a queued record again.
local function requeue(id, t, now)
  local deadline = tonumber(t.d) or (now + ttl_ms(t.m))
  local q = { r = t.r, n = t.n, e = t.e, v = tostring(tonumber(t.v) + 1), u = int(now), k = t.k,
              m = t.m, g = t.g, p = t.p, y = t.y, a = t.a }
  redis.call('DEL', tkey(id))
  redis.call('HSET', tqkey(id), id, pack_queued(q))
  redis.call('ZADD', qkey(t.m, t.g or ''), int(deadline), member(id, t))
  emit('ticket.requeued', id, t.x, t.m, '{}')
end

local function session_ticket_ids(s) return split(s.tk, ',;') end

-- Ends a loading session that did not become a match. `culprit` (optional) is cancelled with
-- `reason`; after a missed ready-check deadline, tickets that did not accept are cancelled;
-- every other ticket goes back to its queue keeping its place. Returns the changed ids.
local function dissolve(sid, now, culprit, reason, retention)
  local s = load_session(sid)
  local changed = {}
  redis.call('ZREM', ACCEPTING, sid)
  redis.call('ZREM', ALLOCATING, sid)
  if s.st ~= 'accepting' and s.st ~= 'allocating' then return changed end
  local timed_out = s.st == 'accepting' and s.dl ~= nil and now >= tonumber(s.dl)
  local left, cancelled = 0, 0
  for _, id in ipairs(session_ticket_ids(s)) do
    local t = load(id)
    if t.s == 'matched' and t.x == sid then
      left = left + 1
      if id == culprit then
        make_terminal(id, t, now, 'cancelled', reason, retention)
        cancelled = cancelled + 1
      elseif timed_out and t.c ~= '1' then
        make_terminal(id, t, now, 'cancelled', 'ready check timed out', retention)
        cancelled = cancelled + 1
      else
        requeue(id, t, now)
      end
      changed[#changed + 1] = id
    end
  end
  redis.call('HINCRBY', COUNTS, 'm:' .. s.md, -left)
  count_outcome(s.md, 'cancelled', cancelled)
  redis.call('DEL', skey(sid))
  local why = reason
  if culprit == nil then
    why = timed_out and 'ready check timed out' or 'no server in time'
  end
  emit('match.dissolved', nil, sid, s.md, reason_data(why))
  return changed
end

local function publish(ids)
  if #ids > 0 then redis.call('PUBLISH', EVENTS, table.concat(ids, ',')) end
end

-- Tickets whose view changed but not their version (no long-poll is woken): replicas drop
-- their cached views of them (store/viewcache.py).
local function publish_views(ids)
  if #ids > 0 then redis.call('PUBLISH', VIEWS, table.concat(ids, ',')) end
end

-- The ticket as a flat list for the Python side (call it on a ticket already load()ed;
-- `loaded`, optional, is that table when the script changed nothing the view shows since): the ticket's own fields (never the token
-- hash), then the session's or the match's fields the view shows, prefixed with '@'.
local function view(id, loaded)
  local t = loaded or hgetall(tkey(id))
  if t.s == nil then
    local rec = redis.call('HGET', tqkey(id), id)
    if not rec then return { 'notfound' } end
    t = unpack_queued(rec)
  end
  local out = { 'ok', 'id', id }
  for f, v in pairs(t) do
    if f ~= 'k' and f ~= 'd' and f ~= '@q' then
      out[#out + 1] = f
      out[#out + 1] = v
    end
  end
  if t.s == 'queued' then
    -- What kept it from a match at the last tick (written by the ticker, see record_blocked).
    local why = redis.call('HGET', WHY_PREFIX .. t.m .. ':' .. (t.g or ''), id)
    if why then out[#out + 1] = '@why'; out[#out + 1] = why end
  end
  if t.x and (t.s == 'matched' or t.s == 'assigned' or t.s == 'finished') then
    local s = redis.call('HMGET', skey(t.x), 'st', 'dl', 'ad', 'pl', 'rg', 'mx')
    if not s[1] then
      local p = peek_session(t.x)
      if p then s = { p.st, p.dl or false, false, false, false, false } end
    end
    if s[1] then
      out[#out + 1] = '@st'; out[#out + 1] = s[1]
      if s[2] then out[#out + 1] = '@dl'; out[#out + 1] = s[2] end
      if s[3] then out[#out + 1] = '@ad'; out[#out + 1] = s[3] end
      if s[4] then out[#out + 1] = '@pl'; out[#out + 1] = s[4] end
      if s[5] then out[#out + 1] = '@rg'; out[#out + 1] = s[5] end
      if s[6] then out[#out + 1] = '@mx'; out[#out + 1] = s[6] end
    end
  end
  return out
end

-- Loads a ticket and checks the caller's access; returns (t, nil) or (nil, error reply).
-- `access` is the ticket token's hash, '@b' for a game backend (any ticket), or
-- '@p:<player>' for a player's own token (a ticket the player is in, its party's included).
local function authorised(id, access)
  local t = load(id)
  if t.s == nil then return nil, { 'notfound' } end
  if access == '@b' then return t, nil end
  if string.sub(access, 1, 3) == '@p:' then
    local player = string.sub(access, 4)
    for _, p in ipairs(ticket_players(t)) do
      if p == player then return t, nil end
    end
    return nil, { 'forbidden' }
  end
  if t.k ~= access then return nil, { 'forbidden' } end
  return t, nil
end

-- Takes a server out of the registry: free set, heartbeat watch, address index, its hash.
local function remove_server(id, sv)
  redis.call('ZREM', freekey(sv.g), id)
  redis.call('ZREM', HEARTBEATS, id)
  redis.call('SREM', BUSY, id)
  redis.call('SREM', STATIC, id)
  if sv.a and redis.call('HGET', ADDRESSES, sv.a) == id then redis.call('HDEL', ADDRESSES, sv.a) end
  redis.call('DEL', svkey(id))
end

-- Backfills (docs/BACKFILL.md, keys.py). A backfill's open slots are 'team:role:count,...'
-- (teams from 0, role '' in a mode without roles); the match lists its open backfills in bf.
local function bfkey(id) return BACKFILL_PREFIX .. id end
local function bfokey(mode) return OPEN_BACKFILLS_PREFIX .. mode end
-- Players who left a match, kept on it so that a repeated leave answers the same: the last
-- LEFT_KEPT only (a long match with much churn must not grow its hash without bound).
local LEFT_KEPT = 64

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

-- Takes an open backfill out of the tick's set, the deadline set and its match's list; its
-- hash stays readable for `retention` s with its end (st, w), so a repeated cancel answers it.
-- The caller emits the event (each type spelled where it happens).
local function end_backfill(bid, b, status, reason, retention)
  redis.call('ZREM', bfokey(b.o), bid)
  redis.call('ZREM', BACKFILL_EXPIRY, bid)
  local open = redis.call('HGET', skey(b.m), 'bf')
  if open then
    local kept = {}
    for _, other in ipairs(split(open, ',')) do
      if other ~= bid then kept[#kept + 1] = other end
    end
    if #kept > 0 then
      redis.call('HSET', skey(b.m), 'bf', table.concat(kept, ','))
    else
      redis.call('HDEL', skey(b.m), 'bf')
    end
  end
  redis.call('HSET', bfkey(bid), 'st', status, 'w', reason or '')
  redis.call('EXPIRE', bfkey(bid), retention)
end

local function backfill_data(bid, reason)
  if reason then return cjson.encode({ backfill_id = bid, reason = reason }) end
  return cjson.encode({ backfill_id = bid })
end

-- The roster changed (a player joined or left): the match's version, which the game server
-- reads in the match document and in its heartbeat answer, goes up. Absent means 1.
local function bump_version(mid, s)
  local v = int(tonumber(s.mv or '1') + 1)
  redis.call('HSET', skey(mid), 'mv', v)
  s.mv = v
  return v
end

-- Takes players off a match's roster (pl, players by team), and a ticket off its ticket lists
-- (tk) when `gone_ticket` is set; remembers them as recent leavers; bumps the version.
local function off_roster(mid, s, players, gone_ticket)
  local gone = {}
  for _, p in ipairs(players) do gone[p] = true end
  if gone_ticket then
    local tk = {}
    for _, members in ipairs(fields(s.tk, ';')) do
      local kept = {}
      for _, other in ipairs(split(members, ',')) do
        if other ~= gone_ticket then kept[#kept + 1] = other end
      end
      tk[#tk + 1] = table.concat(kept, ',')
    end
    s.tk = table.concat(tk, ';')
  end
  local pl = {}
  for _, members in ipairs(fields(s.pl, ';')) do
    local kept = {}
    for _, p in ipairs(split(members, ',')) do
      if not gone[p] then kept[#kept + 1] = p end
    end
    pl[#pl + 1] = table.concat(kept, ',')
  end
  s.pl = table.concat(pl, ';')
  local left = split(s.lf, ',')
  for _, p in ipairs(players) do left[#left + 1] = p end
  while #left > LEFT_KEPT do table.remove(left, 1) end
  s.lf = table.concat(left, ',')
  redis.call('HSET', skey(mid), 'tk', s.tk, 'pl', s.pl, 'lf', s.lf)
  bump_version(mid, s)
end

-- Ends an assigned match: tickets finished (terminal), server back to the free pool of its
-- region (where a registered server is allocated again only while its heartbeat is fresh), or
-- out of the registry if it was deregistered or left the static list meanwhile. Returns
-- changed ids.
local function finish(mid, now, reason, retention)
  local s = load_session(mid)
  local changed = {}
  if s.st ~= 'assigned' then return changed end
  for _, id in ipairs(session_ticket_ids(s)) do
    local t = load(id)
    if t.s == 'assigned' and t.x == mid then
      make_terminal(id, t, now, 'finished', reason, retention)
      changed[#changed + 1] = id
    end
  end
  redis.call('HINCRBY', COUNTS, 'a:' .. s.md, -#changed)
  count_outcome(s.md, 'finished', #changed)
  -- Its open backfills end with it (bounded: at most its open slots).
  for _, bid in ipairs(split(s.bf, ',')) do
    local b = hgetall(bfkey(bid))
    if b.st == 'open' then
      end_backfill(bid, b, 'cancelled', 'match finished', retention)
      emit('backfill.cancelled', nil, mid, s.md, backfill_data(bid, 'match finished'))
    end
  end
  redis.call('HDEL', skey(mid), 'bf')
  redis.call('HSET', skey(mid), 'st', 'finished', 'fr', reason)
  redis.call('EXPIRE', skey(mid), retention)
  emit('match.finished', nil, mid, s.md, reason_data(reason))
  redis.call('SREM', ASSIGNED, mid)
  redis.call('ZREM', ENDS, mid)
  if s.sv then
    local sv = hgetall(svkey(s.sv))
    if sv.m == mid then
      redis.call('HDEL', svkey(s.sv), 'm')
      redis.call('SREM', BUSY, s.sv)
      redis.call('ZREM', HEARTBEATS, s.sv)
      if sv.x == '1' then
        remove_server(s.sv, sv)
      else
        redis.call('ZADD', freekey(sv.g), (sv.k == 's') and '+inf' or (sv.h or int(now)), s.sv)
      end
    end
  end
  return changed
end
