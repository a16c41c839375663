-- ARGV: ticket_id, token_hash, mode, region ('' for none), player, party (comma separated),
--       mmr (canonical string), size, ttl_ms (the mode's), idempotency key name ('' for none),
--       the sealed token to keep under it, the match profile ('' for none; JSON without '|')
-- Returns the view, {'again', sealed token, view...} for a repeated idempotency key, or
-- {'busy', player_id, live_ticket_id}.
local id, token_hash, mode, region = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local player, party, mmr, size, ttl = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local idem, sealed, profile = ARGV[10], ARGV[11], ARGV[12]
-- A retry whose first answer was lost gets the same ticket, checked before anything else
-- (its own live ticket would otherwise be a 409). The key expires with the ticket TTL.
if idem ~= '' then
  local prior = redis.call('GET', idem)
  if prior then
    local prior_id, prior_sealed = string.match(prior, '^([^|]+)|(.*)$')
    local out = view(prior_id, load(prior_id))
    if out[1] == 'ok' then
      table.insert(out, 1, prior_sealed)
      table.insert(out, 1, 'again')
      return out
    end
  end
end
local players = { player }
for _, p in ipairs(split(party, ',')) do players[#players + 1] = p end
local buckets = {}
for i, p in ipairs(players) do
  buckets[i] = plkey(p)
  local other = redis.call('HGET', buckets[i], p)
  -- An index entry always names a live ticket (terminal ones release it); checking the
  -- ticket anyway makes a leftover entry harmless.
  if other and is_live(status_of(other)) then
    return { 'busy', p, other }
  end
end
if redis.call('EXISTS', tkey(id)) == 1 then return { 'exists' } end
local now = now_ms()
-- A queued ticket is one record in its bucket (see unpack_queued in lib/codec.lua); no 'u' until
-- the first change (updated_at is enqueued_at until then).
local t = { s = 'queued', v = '1', m = mode, p = player, r = mmr, n = size, e = int(now),
            k = token_hash }
if party ~= '' then t.y = party end
if region ~= '' then t.g = region end
if profile ~= '' then t.a = profile end
-- The first write, and the check that no queued ticket has this id (nothing is written before).
if redis.call('HSETNX', tqkey(id), id, pack_queued(t)) == 0 then return { 'exists' } end
for i, p in ipairs(players) do redis.call('HSET', buckets[i], p, id) end
local q = qkey(mode, region)
-- The mode's TTL, and whether this queue is known (its key is a field of TTLS once it is in
-- QUEUE_KEYS and its region in the mode's regions: both sets only ever grow), in one read.
local known = redis.call('HMGET', TTLS, mode, q)
if known[1] ~= ttl then redis.call('HSET', TTLS, mode, ttl) end
redis.call('ZADD', q, int(now + tonumber(ttl)), member(id, t))
if not known[2] then
  redis.call('SADD', REGIONS_PREFIX .. mode, region)
  redis.call('SADD', QUEUE_KEYS, q)
  redis.call('HSET', TTLS, q, '1')
end
if idem ~= '' then redis.call('SET', idem, id .. '|' .. sealed, 'PX', ttl) end
count_outcome(mode, 'created', 1)
emit('ticket.queued', id, nil, mode, cjson.encode({ player_id = player, players = players, mmr = tonumber(mmr),
                                                   region = region ~= '' and region or nil }))
publish({ id })
return view(id, t, nil, true)  -- the record just written, as view() would unpack it
