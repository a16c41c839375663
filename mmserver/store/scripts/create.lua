-- ARGV: ticket_id, token_hash, mode, region ('' for none), player, party (comma separated),
--       mmr (canonical string), size, ttl_ms
-- Returns the view, or {'busy', player_id, live_ticket_id}.
local id, token_hash, mode, region = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local player, party, mmr, size, ttl = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local players = { player }
for _, p in ipairs(split(party, ',')) do players[#players + 1] = p end
for _, p in ipairs(players) do
  local other = redis.call('HGET', PLAYERS, p)
  -- An index entry always names a live ticket (terminal ones release it); checking the
  -- ticket anyway makes a leftover entry harmless.
  if other and is_live(redis.call('HGET', tkey(other), 's')) then
    return { 'busy', p, other }
  end
end
if redis.call('EXISTS', tkey(id)) == 1 then return { 'exists' } end
local now = now_ms()
-- No 'u' yet: updated_at is enqueued_at until the first change (a few bytes per queued ticket).
local t = { s = 'queued', v = '1', m = mode, p = player, r = mmr, n = size, e = int(now),
            k = token_hash, l = ttl }
local fields = {}
for k, v in pairs(t) do fields[#fields + 1] = k; fields[#fields + 1] = v end
if party ~= '' then fields[#fields + 1] = 'y'; fields[#fields + 1] = party; t.y = party end
if region ~= '' then fields[#fields + 1] = 'g'; fields[#fields + 1] = region; t.g = region end
redis.call('HSET', tkey(id), unpack(fields))
for _, p in ipairs(players) do redis.call('HSET', PLAYERS, p, id) end
local q = qkey(mode, region)
redis.call('ZADD', q, int(now + tonumber(ttl)), member(id, t))
redis.call('SADD', 'mm:qr:' .. mode, region)
redis.call('SADD', QUEUE_KEYS, q)
publish({ id })
return view(id)
