-- Key names and constants: the Lua side of mmserver/store/keys.py. The names themselves
-- (TICKET_PREFIX, FREE, ...) come from keys.LUA_NAMES, written as locals before this file;
-- here are the functions that build a key from an id, and the constants the scripts share.
-- Scripts touch keys they compute themselves, which is fine on a single Redis or behind
-- Sentinel (not on Redis Cluster).

-- Per-mode ticket TTL (ms), written by create: a queued ticket does not carry its own.
local DEFAULT_TTL_MS = 300000

local function ttl_ms(mode)
  return tonumber(redis.call('HGET', TTLS, mode)) or DEFAULT_TTL_MS
end

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

-- Sessions waiting for a server: one line per region (ALLOCATING .. ':' .. region, the region
-- empty for none), scored by their allocation deadlines, so that a region out of servers
-- keeps only its own sessions waiting. The bare ALLOCATING key is the one line of releases
-- before: it is emptied by allocate.lua and still watched by deadlines.lua.
local function alkey(region) return ALLOCATING .. ':' .. (region or '') end

-- Every line that can hold a session: no region, and each region in ALLOCATING_REGIONS
-- (only grows). Whatever puts a session in a line records its region there first: a claim
-- (every region it made sessions in), an acceptance, allocate.lua moving a session.
local function allocating_lines()
  local out = { alkey('') }
  for _, region in ipairs(redis.call('SMEMBERS', ALLOCATING_REGIONS)) do
    if region ~= '' then out[#out + 1] = alkey(region) end
  end
  return out
end

-- Backfills (docs/BACKFILL.md, keys.py). A backfill's open slots are 'team:role:count,...'
-- (teams from 0, role '' in a mode without roles); the match lists its open backfills in bf.
local function bfkey(id) return BACKFILL_PREFIX .. id end

local function bfokey(mode) return OPEN_BACKFILLS_PREFIX .. mode end

-- Players who left a match, kept on it so that a repeated leave answers the same: the last
-- LEFT_KEPT only (a long match with much churn must not grow its hash without bound).
local LEFT_KEPT = 64
