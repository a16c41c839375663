-- What a caller sees: a ticket's view as the flat list the Python side decodes
-- (store/views.py), and the access check every ticket read and write goes through.

-- The ticket as a flat list for the Python side (call it on a ticket already load()ed):
-- the ticket's own fields (never the token hash), then the session's or the match's fields
-- the view shows, prefixed with '@'. Optional, to save reads: `loaded`, the ticket's table
-- as it now stands; `session`, its session's table as it now stands (load_session's);
-- `fresh`, true for a ticket created in this call (no explanation can exist for it yet).
local function view(id, loaded, session, fresh)
  local t = loaded or read_ticket(id)
  if t.s == nil then
    local rec = redis.call('HGET', tqkey(id), id)
    if not rec then return { 'notfound' } end
    t = unpack_queued(rec)
  end
  local out = { 'ok', 'id', id }
  for f, v in pairs(t) do
    if f ~= 'k' and f ~= 'd' and string.byte(f) ~= 64 then
      out[#out + 1] = f
      out[#out + 1] = v
    end
  end
  if t.s == 'queued' and not fresh then
    -- What kept it from a match at the last tick (written by the ticker, see record_blocked).
    -- Its queue's explanations hold a bucket of tickets per field (keys.why_bucket), each
    -- '\n<id>=<rule>': ids and rule names hold neither '\n' nor '='.
    local bucket = redis.call('HGET', WHY_PREFIX .. t.m .. ':' .. (t.g or ''), string.sub(id, 1, 2))
    if bucket then
      local _, at = string.find(bucket, '\n' .. id .. '=', 1, true)
      if at then
        local stop = string.find(bucket, '\n', at + 1, true)
        out[#out + 1] = '@why'
        out[#out + 1] = string.sub(bucket, at + 1, stop and stop - 1 or -1)
      end
    end
  end
  if t.x and (t.s == 'matched' or t.s == 'assigned' or t.s == 'finished') then
    local s
    if session then
      s = { session.st or false, session.dl or false, session.ad or false, session.pl or false,
            session.rg or false, session.mx or false }
    else
      s = redis.call('HMGET', skey(t.x), 'st', 'dl', 'ad', 'pl', 'rg', 'mx')
    end
    if not s[1] then
      local p = peek_session(t.x)
      if p then s = { p.st, p.dl or false, false, false, false, false } end
    end
    if s[1] then
      out[#out + 1] = '@st'; out[#out + 1] = s[1]
      if s[2] then out[#out + 1] = '@dl'; out[#out + 1] = s[2] end
      if s[3] then out[#out + 1] = '@ad'; out[#out + 1] = s[3] end
      if s[4] then out[#out + 1] = '@pl'; out[#out + 1] = s[4] end
      if s[5] then out[#out + 1] = '@rg'; out[#out + 1] = s[5] end
      if s[6] then out[#out + 1] = '@mx'; out[#out + 1] = s[6] end
    end
  end
  return out
end

-- Loads a ticket and checks the caller's access; returns (t, nil) or (nil, error reply).
-- `access` is the ticket token's hash, '@b' for a game backend (any ticket), or
-- '@p:<player>' for a player's own token (a ticket the player is in, its party's included;
-- not a party member who left its match: its join token is no longer its own). `defer`: as
-- load()'s.
local function authorised(id, access, defer)
  local t = load(id, defer)
  if t.s == nil then return nil, { 'notfound' } end
  if access == '@b' then return t, nil end
  if string.sub(access, 1, 3) == '@p:' then
    local player = string.sub(access, 4)
    for _, p in ipairs(present_players(t)) do
      if p == player then return t, nil end
    end
    return nil, { 'forbidden' }
  end
  if t.k ~= access then return nil, { 'forbidden' } end
  return t, nil
end
