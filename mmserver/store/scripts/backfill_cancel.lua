-- ARGV: match_id, backfill_id, retention_s. A game server withdraws a backfill. Idempotent:
-- an ended backfill (filled, cancelled, expired) answers its end while its record is kept.
-- Returns {'ok', state, reason, open slots} or {'notfound'}.
local mid, bid, retention = ARGV[1], ARGV[2], tonumber(ARGV[3])
local b = hgetall(bfkey(bid))
if b.m ~= mid then return { 'notfound' } end
if b.st == 'open' then
  end_backfill(bid, b, 'cancelled', 'cancelled by server', retention)
  emit('backfill.cancelled', nil, mid, b.o, backfill_data(bid, 'cancelled by server'))
  return { 'ok', 'cancelled', 'cancelled by server', b.sl }
end
return { 'ok', b.st, b.w or '', b.sl or '' }
