-- ARGV: match_id. The roster of a loading session or match, for its game server.
-- Returns {'notfound'} or {'ok', state, mode, region, server id, address, assigned_at,
-- finish reason, team count, extras (roles and rule-chosen attributes, JSON), version, open
-- backfills (JSON: [{id, slots, created, expires}]), then per ticket: team index, ticket id,
-- status, player, party, mmr, join token, profile, players who left}; absent values are ''.
local mid = ARGV[1]
local s = hgetall(skey(mid))
if s.st == nil then
  s = peek_session(mid)
  if s == nil then return { 'notfound' } end
end
local teams = fields(s.tk, ';')
local open = {}
for _, bid in ipairs(split(s.bf, ',')) do
  local b = hgetall(bfkey(bid))
  if b.st == 'open' then open[#open + 1] = { id = bid, slots = b.sl, created = b.c, expires = b.x } end
end
local out = { 'ok', s.st, s.md or '', s.rg or '', s.sv or '', s.ad or '', s.as or '', s.fr or '', #teams,
              s.mx or '', s.mv or '1', (#open > 0) and cjson.encode(open) or '' }
local team = 0
for _, members in ipairs(teams) do
  for _, id in ipairs(split(members, ',')) do
    local t = load(id)
    out[#out + 1] = team
    out[#out + 1] = id
    out[#out + 1] = t.s or ''
    out[#out + 1] = t.p or ''
    out[#out + 1] = t.y or ''
    out[#out + 1] = t.r or ''
    out[#out + 1] = t.j or ''
    out[#out + 1] = t.a or ''
    out[#out + 1] = t.lf or ''
  end
  team = team + 1
end
return out
