-- ARGV: server_id, address (canonical), region ('' for none), the address as the server sent
-- it. Registers or refreshes a server.
-- Returns {server_id, address, 'free'|'busy', match_id or '', region or '', '1' if leaving,
-- the match's roster version or ''}, {'clash', holder}
-- when another server holds the address, or {'static'} for a static server's id.
local id, address, region, sent = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = svkey(id)
local sv = hgetall(key)
if sv.k == 's' then return { 'static' } end
-- A busy server registered, before addresses were kept canonical, under another spelling of
-- its address ('HOST:07777') keeps that one until its match ends: its players were sent there,
-- and refusing its heartbeats as a move would end the match as "server lost".
if sv.m and sv.a == sent then address = sent end
local holder = redis.call('HGET', ADDRESSES, address)
if holder and holder ~= id then return { 'clash', holder } end
if sv.m and sv.a and sv.a ~= address then return { 'moving', sv.m } end
local now = int(now_ms())
if sv.a and sv.a ~= address and redis.call('HGET', ADDRESSES, sv.a) == id then
  redis.call('HDEL', ADDRESSES, sv.a)
end
redis.call('HSET', ADDRESSES, address, id)
redis.call('HSET', key, 'a', address, 'h', now, 'k', 'r')
-- A busy server deregistered meanwhile keeps its 'x' mark: it leaves when its match ends
-- (a later heartbeat registers it anew).
if region ~= '' then redis.call('HSET', key, 'g', region) else redis.call('HDEL', key, 'g') end
if sv.m then
  redis.call('ZADD', HEARTBEATS, now, id)
  -- The roster version: a server learns from its heartbeat that players joined or left.
  local version = redis.call('HGET', skey(sv.m), 'mv') or '1'
  return { 'ok', id, address, 'busy', sv.m, region, sv.x or '', version }
end
if sv.a and (sv.g or '') ~= region then redis.call('ZREM', freekey(sv.g), id) end
redis.call('ZADD', freekey(region), now, id)
return { 'ok', id, address, 'free', '', region, '', '' }
