-- Shared prelude, prepended to every script (Redis 6.2 has no functions library).
-- Key names mirror mmserver/store/keys.py. Scripts touch keys they compute themselves, which
-- is fine on a single Redis or behind Sentinel (not on Redis Cluster).
-- Effects replication (the default since Redis 5): TIME may be called before writes.
redis.replicate_commands()

local PLAYERS = 'mm:pl'
local QUEUE_KEYS = 'mm:qk'
local ACCEPTING = 'mm:acc'
local ALLOCATING = 'mm:alloc'
local ASSIGNED = 'mm:asg'
local COUNTS = 'mm:n'
local FREE = 'mm:sv:free'
local BUSY = 'mm:sv:busy'
local EVENTS = 'mm:events'
-- Claimed tickets whose hash has not been rewritten yet: ticket id -> 'session|ttl_deadline|claimed_at'.
local CLAIMED = 'mm:cl'

local function tkey(id) return 'mm:t:' .. id end
local function skey(id) return 'mm:s:' .. id end
local function svkey(id) return 'mm:sv:' .. id end
local function qkey(mode, region) return 'mm:q:' .. mode .. ':' .. region end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers up to 2^53 print exactly with %d (tostring would use %.14g).
local function int(n) return string.format('%d', n) end

local function split(s, sep)
  local out = {}
  if s == nil or s == false or s == '' then return out end
  for part in string.gmatch(s, '[^' .. sep .. ']+') do out[#out + 1] = part end
  return out
end

local function hgetall(key)
  local flat = redis.call('HGETALL', key)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

-- A claim writes its tickets' new state into CLAIMED in one batched HSET instead of
-- rewriting every ticket hash (what makes a tick claim 100k tickets fast); the first script
-- that loads the ticket afterwards applies it. Every script loads tickets through here, so
-- none ever sees a claimed ticket as queued. Returns the ticket's fields ({} if none).
local function load(id)
  local t = hgetall(tkey(id))
  if t.s == 'queued' then
    local pending = redis.call('HGET', CLAIMED, id)
    if pending then
      local sid, deadline, at = string.match(pending, '^([^|]+)|([^|]+)|([^|]+)$')
      t.s, t.x, t.d, t.u, t.v = 'matched', sid, deadline, at, tostring(tonumber(t.v) + 1)
      redis.call('HSET', tkey(id), 's', t.s, 'x', sid, 'd', deadline, 'u', at, 'v', t.v)
      redis.call('HDEL', CLAIMED, id)
    end
  end
  return t
end

local function is_live(status)
  return status == 'queued' or status == 'matched' or status == 'assigned'
end

-- The queue member carries the matcher's inputs: id|mmr|size|enqueued_ms. It is rebuilt from
-- the ticket's own fields, which hold exactly the strings it was built from.
local function member(id, t) return id .. '|' .. t.r .. '|' .. t.n .. '|' .. t.e end

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
  redis.call('HSET', key, 's', status, 'w', reason)
  redis.call('HDEL', key, 'c', 'd')
  if status ~= 'finished' then redis.call('HDEL', key, 'x') end
  touch(id, now)
  for _, p in ipairs(ticket_players(t)) do
    if redis.call('HGET', PLAYERS, p) == id then redis.call('HDEL', PLAYERS, p) end
  end
  redis.call('EXPIRE', key, retention)
end

-- Back to its queue with its original enqueue time (in the member); the score is its TTL
-- deadline, kept from before the match (refreshed by reads while matched).
local function requeue(id, t, now)
  local key = tkey(id)
  local deadline = tonumber(t.d) or (now + tonumber(t.l))
  redis.call('ZADD', qkey(t.m, t.g or ''), int(deadline), member(id, t))
  redis.call('HSET', key, 's', 'queued')
  redis.call('HDEL', key, 'x', 'c', 'd')
  touch(id, now)
end

local function session_ticket_ids(s) return split(s.tk, ',;') end

-- Ends a loading session that did not become a match. `culprit` (optional) is cancelled with
-- `reason`; after a missed ready-check deadline, tickets that did not accept are cancelled;
-- every other ticket goes back to its queue keeping its place. Returns the changed ids.
local function dissolve(sid, now, culprit, reason, retention)
  local s = hgetall(skey(sid))
  local changed = {}
  redis.call('ZREM', ACCEPTING, sid)
  redis.call('ZREM', ALLOCATING, sid)
  if s.st ~= 'accepting' and s.st ~= 'allocating' then return changed end
  local timed_out = s.st == 'accepting' and s.dl ~= nil and now >= tonumber(s.dl)
  local left = 0
  for _, id in ipairs(session_ticket_ids(s)) do
    local t = load(id)
    if t.s == 'matched' and t.x == sid then
      left = left + 1
      if id == culprit then
        make_terminal(id, t, now, 'cancelled', reason, retention)
      elseif timed_out and t.c ~= '1' then
        make_terminal(id, t, now, 'cancelled', 'ready check timed out', retention)
      else
        requeue(id, t, now)
      end
      changed[#changed + 1] = id
    end
  end
  redis.call('HINCRBY', COUNTS, 'm:' .. s.md, -left)
  redis.call('DEL', skey(sid))
  return changed
end

local function publish(ids)
  if #ids > 0 then redis.call('PUBLISH', EVENTS, table.concat(ids, ',')) end
end

-- The ticket as a flat list for the Python side (call it on a ticket already load()ed): the ticket's own fields (never the token
-- hash), then the session's or the match's fields the view shows, prefixed with '@'.
local function view(id)
  local flat = redis.call('HGETALL', tkey(id))
  if #flat == 0 then return { 'notfound' } end
  local out = { 'ok', 'id', id }
  local t = {}
  for i = 1, #flat, 2 do
    t[flat[i]] = flat[i + 1]
    if flat[i] ~= 'k' and flat[i] ~= 'd' then
      out[#out + 1] = flat[i]
      out[#out + 1] = flat[i + 1]
    end
  end
  if t.x and (t.s == 'matched' or t.s == 'assigned' or t.s == 'finished') then
    local s = redis.call('HMGET', skey(t.x), 'st', 'dl', 'ad', 'pl')
    if s[1] then
      out[#out + 1] = '@st'; out[#out + 1] = s[1]
      if s[2] then out[#out + 1] = '@dl'; out[#out + 1] = s[2] end
      if s[3] then out[#out + 1] = '@ad'; out[#out + 1] = s[3] end
      if s[4] then out[#out + 1] = '@pl'; out[#out + 1] = s[4] end
    end
  end
  return out
end

-- Loads a ticket and checks its token hash; returns (t, nil) or (nil, error reply).
local function authorised(id, token_hash)
  local t = load(id)
  if t.s == nil then return nil, { 'notfound' } end
  if t.k ~= token_hash then return nil, { 'forbidden' } end
  return t, nil
end

-- Ends an assigned match: tickets finished (terminal), server back to the free pool (where a
-- registered server is allocated again only while its heartbeat is fresh). Returns changed ids.
local function finish(mid, now, reason, retention)
  local s = hgetall(skey(mid))
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
  redis.call('HSET', skey(mid), 'st', 'finished', 'fr', reason)
  redis.call('EXPIRE', skey(mid), retention)
  redis.call('SREM', ASSIGNED, mid)
  if s.sv then
    local sv = hgetall(svkey(s.sv))
    if sv.m == mid then
      redis.call('HDEL', svkey(s.sv), 'm')
      redis.call('SREM', BUSY, s.sv)
      redis.call('ZREM', 'mm:sv:hb', s.sv)
      redis.call('ZADD', FREE, (sv.k == 's') and '+inf' or sv.h, s.sv)
    end
  end
  return changed
end
