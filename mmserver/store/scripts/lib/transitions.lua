-- Transitions shared by several scripts: a ticket's change of state (touch, terminal,
-- requeue), a session dissolved, a match finished, a server removed, a backfill ended, a
-- roster changed. Each appends its events in the same call.

-- A new version of a ticket not loaded in this call (its view changed through its session).
local function touch(id, now)
  local t = read_ticket(id)
  if t.s == nil then return end
  t.v, t.u = tostring(tonumber(t.v) + 1), int(now)
  save_ticket(id, t)
end

-- Terminal: release the player index at once, keep the ticket readable for `retention` s.
-- One SET writes the terminal record and its expiry (t was loaded in this call: its version is
-- the current one). A finished ticket keeps its match (x); no terminal one keeps c or d.
local function make_terminal(id, t, now, status, reason, retention)
  local x = t.x
  t.s, t.w, t.v, t.u = status, reason, tostring(tonumber(t.v) + 1), int(now)
  t.c, t.d = nil, nil
  if status ~= 'finished' then t.x = nil end
  if t['@q'] then
    redis.call('HDEL', tqkey(id), id)
    t['@q'] = nil
  elseif t['@w'] then
    redis.call('HDEL', tqkey(id), id)
    redis.call('HDEL', CLAIMED, id)
    t['@w'] = nil
  end
  redis.call('SET', tkey(id), pack_ticket(t), 'EX', retention)
  t.x = x  -- (the event below names the session the ticket left)
  for _, p in ipairs(ticket_players(t)) do
    local bucket = plkey(p)
    if redis.call('HGET', bucket, p) == id then redis.call('HDEL', bucket, p) end
  end
  emit('ticket.' .. status, id, t.x, t.m, reason_data(reason))
end

-- Back to its queue with its original enqueue time (in the member); the score is its TTL
-- deadline, kept from before the match (refreshed by reads while matched). The ticket's
-- record becomes a queued record again.
local function requeue(id, t, now)
  local deadline = tonumber(t.d) or (now + ttl_ms(t.m))
  local q = { r = t.r, n = t.n, e = t.e, v = tostring(tonumber(t.v) + 1), u = int(now), k = t.k,
              m = t.m, g = t.g, p = t.p, y = t.y, a = t.a }
  redis.call('DEL', tkey(id))
  redis.call('HSET', tqkey(id), id, pack_queued(q))
  redis.call('ZADD', qkey(t.m, t.g or ''), int(deadline), member(id, t))
  emit('ticket.requeued', id, t.x, t.m, '{}')
end

-- Ends a loading session that did not become a match. `culprit` (optional) is cancelled with
-- `reason`; after a missed ready-check deadline, tickets that did not accept are cancelled;
-- every other ticket goes back to its queue keeping its place. Returns the changed ids.
local function dissolve(sid, now, culprit, reason, retention)
  local s = load_session(sid)
  local changed = {}
  redis.call('ZREM', ACCEPTING, sid)
  redis.call('ZREM', alkey(s.rg), sid)
  if s.st ~= 'accepting' and s.st ~= 'allocating' then return changed end
  local timed_out = s.st == 'accepting' and s.dl ~= nil and now >= tonumber(s.dl)
  local left, cancelled = 0, 0
  for _, id in ipairs(session_ticket_ids(s)) do
    local t = load(id)
    if t.s == 'matched' and t.x == sid then
      left = left + 1
      if id == culprit then
        make_terminal(id, t, now, 'cancelled', reason, retention)
        cancelled = cancelled + 1
      elseif timed_out and t.c ~= '1' then
        make_terminal(id, t, now, 'cancelled', 'ready check timed out', retention)
        cancelled = cancelled + 1
      else
        requeue(id, t, now)
      end
      changed[#changed + 1] = id
    end
  end
  add_count('m:' .. s.md, -left)
  count_outcome(s.md, 'cancelled', cancelled)
  redis.call('DEL', skey(sid))
  local why = reason
  if culprit == nil then
    why = timed_out and 'ready check timed out' or 'no server in time'
  end
  emit('match.dissolved', nil, sid, s.md, reason_data(why))
  return changed
end

-- Takes a server out of the registry: free set, heartbeat watch, address index, its hash.
local function remove_server(id, sv)
  redis.call('ZREM', freekey(sv.g), id)
  redis.call('ZREM', HEARTBEATS, id)
  redis.call('SREM', BUSY, id)
  redis.call('SREM', STATIC, id)
  if sv.a and redis.call('HGET', ADDRESSES, sv.a) == id then redis.call('HDEL', ADDRESSES, sv.a) end
  redis.call('DEL', svkey(id))
end

-- Takes an open backfill out of the tick's set, the deadline set and its match's list; its
-- hash stays readable for `retention` s with its end (st, w), so a repeated cancel answers it.
-- The caller emits the event (each type spelled where it happens).
local function end_backfill(bid, b, status, reason, retention)
  redis.call('ZREM', bfokey(b.o), bid)
  redis.call('ZREM', BACKFILL_EXPIRY, bid)
  local open = redis.call('HGET', skey(b.m), 'bf')
  if open then
    local kept = {}
    for _, other in ipairs(split(open, ',')) do
      if other ~= bid then kept[#kept + 1] = other end
    end
    if #kept > 0 then
      redis.call('HSET', skey(b.m), 'bf', table.concat(kept, ','))
    else
      redis.call('HDEL', skey(b.m), 'bf')
    end
  end
  redis.call('HSET', bfkey(bid), 'st', status, 'w', reason or '')
  redis.call('EXPIRE', bfkey(bid), retention)
end

-- The roster changed (a player joined or left): the match's version, which the game server
-- reads in the match document and in its heartbeat answer, goes up. Absent means 1.
local function bump_version(mid, s)
  local v = int(tonumber(s.mv or '1') + 1)
  redis.call('HSET', skey(mid), 'mv', v)
  s.mv = v
  return v
end

-- Takes players off a match's roster (pl, players by team), and a ticket off its ticket lists
-- (tk) when `gone_ticket` is set; remembers them as recent leavers; bumps the version.
local function off_roster(mid, s, players, gone_ticket)
  local gone = {}
  for _, p in ipairs(players) do gone[p] = true end
  if gone_ticket then
    local tk = {}
    for _, members in ipairs(fields(s.tk, ';')) do
      local kept = {}
      for _, other in ipairs(split(members, ',')) do
        if other ~= gone_ticket then kept[#kept + 1] = other end
      end
      tk[#tk + 1] = table.concat(kept, ',')
    end
    s.tk = table.concat(tk, ';')
  end
  local pl = {}
  for _, members in ipairs(fields(s.pl, ';')) do
    local kept = {}
    for _, p in ipairs(split(members, ',')) do
      if not gone[p] then kept[#kept + 1] = p end
    end
    pl[#pl + 1] = table.concat(kept, ',')
  end
  s.pl = table.concat(pl, ';')
  local left = split(s.lf, ',')
  for _, p in ipairs(players) do left[#left + 1] = p end
  while #left > LEFT_KEPT do table.remove(left, 1) end
  s.lf = table.concat(left, ',')
  redis.call('HSET', skey(mid), 'tk', s.tk, 'pl', s.pl, 'lf', s.lf)
  bump_version(mid, s)
end

-- A player leaves its assigned match `mid` (session s; its ticket id, loaded as t): the game
-- server reported it gone ('left'), or an operator released it. It leaves the roster, its
-- place opens (for a backfill), the version goes up. A solo ticket ends 'finished' with
-- `reason`; a party ticket keeps playing for the members still there: the one who left is
-- marked in the ticket's lf and freed from the player index (it may queue again), and the
-- ticket finishes when its last player leaves.
local function leave_match(mid, s, id, t, player, now, reason, retention)
  local staying = {}
  for _, p in ipairs(present_players(t)) do
    if p ~= player then staying[#staying + 1] = p end
  end
  if #staying == 0 then
    make_terminal(id, t, now, 'finished', reason, retention)
    add_count('a:' .. t.m, -1)
    count_outcome(t.m, 'finished', 1)
    off_roster(mid, s, { player }, id)
  else
    local left = split(t.lf, ',')
    left[#left + 1] = player
    -- A new version: its holders' long-polls wake, the assignment's roster changed.
    t.lf, t.v, t.u = table.concat(left, ','), tostring(tonumber(t.v) + 1), int(now)
    save_ticket(id, t)
    redis.call('HDEL', plkey(player), player)
    off_roster(mid, s, { player }, nil)
  end
  emit('match.player_left', id, mid, t.m, cjson.encode({ players = { player }, reason = reason }))
  publish({ id })
  publish_views(session_ticket_ids(s))  -- the others' assignment shows the roster
end

-- Ends an assigned match: tickets finished (terminal), server back to the free pool of its
-- region (where a registered server is allocated again only while its heartbeat is fresh), or
-- out of the registry if it was deregistered or left the static list meanwhile. Returns
-- changed ids. `loaded`, optional: the session's table, load_session()ed in this call.
local function finish(mid, now, reason, retention, loaded)
  local s = loaded or load_session(mid)
  local changed = {}
  if s.st ~= 'assigned' then return changed end
  for _, id in ipairs(session_ticket_ids(s)) do
    local t = load(id)
    if t.s == 'assigned' and t.x == mid then
      make_terminal(id, t, now, 'finished', reason, retention)
      changed[#changed + 1] = id
    end
  end
  add_count('a:' .. s.md, -#changed)
  count_outcome(s.md, 'finished', #changed)
  -- Its open backfills end with it (bounded: at most its open slots).
  for _, bid in ipairs(split(s.bf, ',')) do
    local b = hgetall(bfkey(bid))
    if b.st == 'open' then
      end_backfill(bid, b, 'cancelled', 'match finished', retention)
      emit('backfill.cancelled', nil, mid, s.md, backfill_data(bid, 'match finished'))
    end
  end
  if s.bf then redis.call('HDEL', skey(mid), 'bf') end
  redis.call('HSET', skey(mid), 'st', 'finished', 'fr', reason)
  redis.call('EXPIRE', skey(mid), retention)
  emit('match.finished', nil, mid, s.md, reason_data(reason))
  redis.call('SREM', ASSIGNED, mid)
  redis.call('ZREM', ENDS, mid)
  if s.sv then
    local sv = hgetall(svkey(s.sv))
    if sv.m == mid then
      redis.call('HDEL', svkey(s.sv), 'm')
      redis.call('SREM', BUSY, s.sv)
      -- Only registered servers are watched (allocate.lua): a static one never is.
      if sv.k ~= 's' then redis.call('ZREM', HEARTBEATS, s.sv) end
      if sv.x == '1' then
        remove_server(s.sv, sv)
      else
        redis.call('ZADD', freekey(sv.g), (sv.k == 's') and '+inf' or (sv.h or int(now)), s.sv)
      end
    end
  end
  return changed
end
