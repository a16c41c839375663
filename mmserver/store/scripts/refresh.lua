-- ARGV: Q, then Q triples (mode, region or '', queue member) of queued tickets, then the ids
-- of matched tickets. The TTL refreshes of reads a replica answered from its view cache,
-- batched per tick (store/tickets.py ReadRefreshes): what read.lua does for one ticket, for
-- many. A member no longer in its queue (the ticket left it since) is left alone (ZADD XX);
-- a ticket no longer matched is not touched.
local now = now_ms()
local deadlines = {}
local function deadline(mode)
  local d = deadlines[mode]
  if d == nil then
    d = int(now + ttl_ms(mode))
    deadlines[mode] = d
  end
  return d
end
local q = tonumber(ARGV[1])
for i = 0, q - 1 do
  local at = 2 + 3 * i
  redis.call('ZADD', qkey(ARGV[at], ARGV[at + 1]), 'XX', deadline(ARGV[at]), ARGV[at + 2])
end
local matched = 0
for i = 2 + 3 * q, #ARGV do
  local t = read_ticket(ARGV[i])
  if t.s == 'matched' then
    t.d = deadline(t.m)
    save_ticket(ARGV[i], t)
    matched = matched + 1
  end
end
return matched
