-- Lazy claims: a tick's claim records matched tickets (mm:cl) and new sessions (mm:cs) in
-- batched writes; the first script that loads one applies it. Every script loads tickets and
-- sessions through here, so none sees a claimed ticket as queued.

-- A claim records its sessions in PENDING_SESSIONS (one batched HSET) instead of one hash
-- each; the first script that loads one writes its hash. peek_session reads without writing.
local function peek_session(sid)
  local pending = redis.call('HGET', PENDING_SESSIONS, sid)
  if not pending then return nil end
  -- state|mode|region|deadline|teams, then |extras (roles and rule-chosen attributes, JSON)
  -- for a mode with rules. Teams never hold '|'.
  local st, md, rg, dl, tk, mx = string.match(pending, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  if st == nil then
    st, md, rg, dl, tk = string.match(pending, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  end
  local c = 0
  for _ in string.gmatch(tk, '[^,;]+') do c = c + 1 end
  local s = { st = st, md = md, rg = rg, tk = tk, c = tostring(c), n = '0' }
  if dl ~= '' then s.dl = dl end
  if mx ~= nil and mx ~= '' then s.mx = mx end
  return s
end

-- Writes a session's whole hash from its table (fields starting with '@' are markers of
-- this call) and drops its pending entry.
local function write_session(sid, s)
  local fields = {}
  for f, v in pairs(s) do
    if string.byte(f) ~= 64 then fields[#fields + 1] = f; fields[#fields + 1] = v end
  end
  redis.call('HSET', skey(sid), unpack(fields))
  redis.call('HDEL', PENDING_SESSIONS, sid)
  s['@w'] = nil
end

-- The session's fields ({} if none), its hash written first if the claim left it pending.
-- With `defer`, a pending session is not written: it comes back marked '@w', and the caller
-- writes it whole, with its own changes, through save_session (one HSET instead of two).
local function load_session(sid, defer)
  local s = hgetall(skey(sid))
  if s.st ~= nil then return s end
  local p = peek_session(sid)
  if p == nil then return s end
  if defer then p['@w'] = true; return p end
  write_session(sid, p)
  return p
end

-- Stores a session's changes, already made in its table: `changes` (field, value, ...) on
-- a session that has its hash, the whole table on one loaded with `defer` and still pending.
local function save_session(sid, s, changes)
  if s['@w'] then
    write_session(sid, s)
  elseif #changes > 0 then
    redis.call('HSET', skey(sid), unpack(changes))
  end
end

-- A claim writes its tickets' new state into CLAIMED in one batched HSET instead of
-- rewriting every ticket (what makes a tick claim 100k tickets fast); the first script that
-- loads the ticket afterwards applies it. Every script loads tickets through here, so none
-- ever sees a claimed ticket as queued. Returns the ticket's fields ({} if none); a ticket
-- still queued has '@q' set (its fields came from its bucket record).
-- With `defer`, a pending claim is applied to the table only, marked '@w': the caller writes
-- it, with its own changes, through apply_claim (one write instead of two).
local function load(id, defer)
  local t = read_ticket(id)
  if t.s ~= nil then return t end
  local rec = redis.call('HGET', tqkey(id), id)
  if not rec then return t end
  t = unpack_queued(rec)
  local pending = redis.call('HGET', CLAIMED, id)
  if pending then
    local sid, deadline, at = string.match(pending, '^([^|]+)|([^|]+)|([^|]+)$')
    t.s, t.x, t.d, t.u, t.v = 'matched', sid, deadline, at, tostring(tonumber(t.v) + 1)
    t['@q'] = nil
    if defer then t['@w'] = true; return t end
    write_record(id, t)
    redis.call('HDEL', CLAIMED, id)
  end
  return t
end

-- Writes a ticket loaded with `defer` whose claim is still pending: its record, whole (with
-- the caller's changes), in place of its queued record and its claim entry.
local function apply_claim(id, t)
  write_record(id, t)
  redis.call('HDEL', CLAIMED, id)
end

-- Status only (no claim applied: a claimed ticket is live either way).
local function status_of(id)
  local s = read_ticket(id).s
  if s then return s end
  if redis.call('HEXISTS', tqkey(id), id) == 1 then return 'queued' end
  return nil
end
