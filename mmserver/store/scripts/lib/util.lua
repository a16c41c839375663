-- Helpers every script may use: effects replication, the clock, number formatting, string
-- splitting, hash reading, the event log (emit), pub/sub notices and outcome counters.

-- Effects replication (the default since Redis 5): TIME may be called before writes.
redis.replicate_commands()

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

-- The event log (SPEC "Events (v2)"): the script that makes a transition appends its event in
-- the same call, so an event exists exactly when its transition happened (keys.py, EVENT_LOG).
-- Every entry has the same fields in the same order, which Redis stores once per block:
-- y type, t ticket id, m match id, o mode ('' when the event has none), d data (JSON object).
-- MAXLEN ~ keeps the length bound at almost no cost; the age bound is applied each tick.
local function emit(kind, ticket, match, mode, data)
  redis.call('XADD', EVENT_LOG, 'MAXLEN', '~', EVENT_MAX_LEN, '*',
             'y', kind, 't', ticket or '', 'm', match or '', 'o', mode or '', 'd', data or '{}')
end

-- A script appending an event per ticket of a batch (a claim: up to thousands) appends them
-- with emit_untrimmed and calls trim_events once at its end, so the bound holds after every
-- script as it does with emit (MAXLEN ~ trims whole blocks either way). Measured on the claims
-- of 100,000 tickets: 0.79 s of script time with MAXLEN on each append, 0.70-0.75 s without.
local function emit_untrimmed(kind, ticket, match, mode, data)
  redis.call('XADD', EVENT_LOG, '*',
             'y', kind, 't', ticket or '', 'm', match or '', 'o', mode or '', 'd', data or '{}')
end

-- LIMIT 0: no cap on the entries one trim evicts (by default 100 blocks, 10,000 entries: a
-- claim of more tickets than that would leave the log above its bound).
local function trim_events()
  redis.call('XTRIM', EVENT_LOG, 'MAXLEN', '~', EVENT_MAX_LEN, 'LIMIT', 0)
end

-- A reason (or any string) as event data: cjson escapes what needs escaping.
local function reason_data(reason)
  return cjson.encode({ reason = reason })
end

local function backfill_data(bid, reason)
  if reason then return cjson.encode({ backfill_id = bid, reason = reason }) end
  return cjson.encode({ backfill_id = bid })
end

local function publish(ids)
  if #ids > 0 then redis.call('PUBLISH', EVENTS, table.concat(ids, ',')) end
end

-- Tickets whose view changed but not their version (no long-poll is woken): replicas drop
-- their cached views of them (store/viewcache.py).
local function publish_views(ids)
  if #ids > 0 then redis.call('PUBLISH', VIEWS, table.concat(ids, ',')) end
end

-- A live count (COUNTS: 'm:<mode>' matched, 'a:<mode>' assigned tickets) moved by n. Nothing
-- for 0: Lua writes -0 as '-0', which HINCRBY refuses, and a script that fails half-way keeps
-- what it wrote before (finishing a match every player had left failed so, every time).
local function add_count(field, n)
  if n ~= 0 then redis.call('HINCRBY', COUNTS, field, n) end
end

-- Counted by the script that makes the transition, in the same atomic call: a count is
-- exactly the tickets that moved, whichever replica moved them, and an idempotent repeat
-- (which moves nothing) counts nothing. One HINCRBY per mode and outcome a script touches.
local function count_outcome(mode, outcome, n)
  if n > 0 then redis.call('HINCRBY', OUTCOMES, mode .. ':' .. outcome, n) end
end
