-- ARGV: mode, limit. The open backfills of a mode for the tick, oldest first, at most
-- `limit` (the rest wait for a later tick), each with what the matcher checks a ticket
-- against: the match's region, what its rules chose (mx: roles and overlap values) and every
-- ticket still on its roster (team, MMR, players still there, profile).
-- Returns one JSON string: [{id, match, region, created, expires, slots, mx, roster:
-- [{team, mmr, size, profile}]}]. Ended backfills found in the set are dropped from it.
local mode, limit = ARGV[1], tonumber(ARGV[2])
local out = {}
for _, bid in ipairs(redis.call('ZRANGE', bfokey(mode), 0, limit - 1)) do
  local b = hgetall(bfkey(bid))
  local s = (b.st == 'open') and load_session(b.m) or {}
  if s.st ~= 'assigned' then
    redis.call('ZREM', bfokey(mode), bid)  -- a leftover: its backfill or match ended
  else
    local roster = {}
    for team, members in ipairs(fields(s.tk, ';')) do
      for _, id in ipairs(split(members, ',')) do
        local t = load(id)
        if t.s == 'assigned' and t.x == b.m then
          roster[#roster + 1] = { team = team - 1, mmr = t.r, size = #present_players(t), profile = t.a or '' }
        end
      end
    end
    out[#out + 1] = { id = bid, match = b.m, region = s.rg or '', created = b.c, expires = b.x,
                      slots = b.sl, mx = s.mx or '', teams = #fields(s.tk, ';'), roster = roster }
  end
end
return cjson.encode(out)
