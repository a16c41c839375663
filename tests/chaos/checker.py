"""The invariants of SPEC.md, checked from Redis itself and through the API once the run is over.

Reads every `mm:` key (layout: mmserver/store/keys.py; queued tickets are records in the
`mm:tq:` buckets, the player index is spread over `mm:pl:` buckets), then checks each ticket, session,
queue and server against the others and against what clients were told (the ledger). Each
finding is a Violation of one kind:

- lost: an acknowledged ticket Redis no longer knows (and not purged after its retention), or
  whose state went back in time (a version lower than one a client saw, a terminal state left);
- duplicated: a player in two live tickets, a ticket in two queues, two live sessions or two
  matches, a server in two matches;
- stranded: a queued ticket past its TTL deadline, a matched ticket past its session's
  deadlines, a live session no deadline index will ever process;
- state: a ticket, session or server whose fields contradict the indexes (not a player-facing
  loss yet, but the next step would act on wrong data), counters that drifted;
- reason: a terminal ticket without a reason; retention: a terminal ticket without an expiry;
- api: the API answers something else than Redis holds.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import redis

from mmserver.store import keys
from mmserver.store.events import decode as decode_event
from tests.chaos.api import call
from tests.chaos.ledger import LIVE, TERMINAL, Ledger
from tests.chaos.settings import TEAM_SIZES
from tests.store.invariants import check_rosters_and_backfills

STATUSES = LIVE | TERMINAL


@dataclass(frozen=True)
class Violation:
    kind: str
    subject: str
    detail: str

    def as_dict(self) -> dict:
        return {"kind": self.kind, "subject": self.subject, "detail": self.detail}


@dataclass
class Snapshot:
    now_ms: int
    tickets: dict[str, dict] = field(default_factory=dict)
    ttls: dict[str, int] = field(default_factory=dict)
    sessions: dict[str, dict] = field(default_factory=dict)
    queues: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    servers: dict[str, dict] = field(default_factory=dict)
    ends: dict[str, float] = field(default_factory=dict)  # mm:end: match -> max-duration end (ms)
    players: dict[str, str] = field(default_factory=dict)
    accepting: dict[str, float] = field(default_factory=dict)
    allocating: dict[str, float] = field(default_factory=dict)  # every region's line
    allocating_line: dict[str, str] = field(default_factory=dict)  # session -> its line's key
    allocating_regions: set[str] = field(default_factory=set)  # the regions whose lines scripts walk
    assigned: set[str] = field(default_factory=set)
    free: dict[str, float] = field(default_factory=dict)
    busy: set[str] = field(default_factory=set)
    counts: dict[str, str] = field(default_factory=dict)
    last_event_id: str | None = None  # the newest event at the snapshot's instant
    odd: dict[str, str] = field(default_factory=dict)  # a ticket/session/queue key of an unexpected type
    stale_claims: dict[str, str] = field(default_factory=dict)
    misplaced: dict[str, str] = field(default_factory=dict)  # a record or index entry where no lookup finds it


# Every mm: key with its type, PTTL and contents, in one atomic script: replicas may still be
# ticking while the checker reads (a crash test's survivors), and a ticket moving between
# its queued record and its own record, or a bucket emptied and re-created, must never be seen
# half-way (a SCAN across several calls can miss such keys). Fine for a test deployment's
# few thousand keys; it blocks Redis for the time it runs.
_SNAPSHOT_LUA = """
local time = redis.call('TIME')
local out = { time[1], time[2] }
for _, name in ipairs(redis.call('KEYS', 'mm:*')) do
  local kind = redis.call('TYPE', name)['ok']
  local data = {}
  if kind == 'hash' then data = redis.call('HGETALL', name)
  elseif kind == 'zset' then data = redis.call('ZRANGE', name, 0, -1, 'WITHSCORES')
  elseif kind == 'set' then data = redis.call('SMEMBERS', name)
  elseif kind == 'string' then data = { redis.call('GET', name) }
  elseif kind == 'stream' then
    -- Only the newest entry's id: the event log is read up to it afterwards, so events and
    -- state are of the same instant although the log is read in pages.
    local newest = redis.call('XREVRANGE', name, '+', '-', 'COUNT', 1)
    data = { newest[1] and newest[1][1] or '' }
  end
  out[#out + 1] = name
  out[#out + 1] = kind
  out[#out + 1] = redis.call('PTTL', name)
  out[#out + 1] = data
end
return out
"""


def _pairs(flat: list) -> dict:
    return dict(zip(flat[0::2], flat[1::2]))


def _scored(flat: list) -> list[tuple[str, float]]:
    return [(member, float(score)) for member, score in zip(flat[0::2], flat[1::2])]


def snapshot(client: redis.Redis) -> Snapshot:
    """Everything under mm:, as of one instant (see _SNAPSHOT_LUA)."""
    reply = client.eval(_SNAPSHOT_LUA, 0)
    seconds, micros = int(reply[0]), int(reply[1])
    snap = Snapshot(now_ms=seconds * 1000 + micros // 1000)
    queued: list[tuple[str, str, str]] = []
    singles = {"mm:acc", "mm:alloc", "mm:asg", "mm:sv:free", "mm:sv:busy", "mm:n", "mm:cl", "mm:cs",
               keys.SERVER_ADDRESSES, keys.STATIC_SERVERS, "mm:sv:static", "mm:sv:hb",
               keys.MATCH_ENDS, keys.ALLOCATING_REGIONS}
    regional_free: list = []
    found: dict[str, object] = {}
    for i in range(2, len(reply), 4):
        name, kind, pttl, data = reply[i], reply[i + 1], int(reply[i + 2]), reply[i + 3]
        if name in singles:
            found[name] = data
        elif kind == "stream" and name == keys.EVENT_LOG:
            snap.last_event_id = data[0] or None
        elif kind == "string" and name.startswith("mm:t:"):
            snap.tickets[name[5:]] = keys.unpack_ticket(data[0])
            snap.ttls[name[5:]] = pttl
        elif kind == "hash" and name.startswith("mm:tq:"):
            queued.extend((name, tid, record) for tid, record in _pairs(data).items())
        elif kind == "hash" and name.startswith("mm:pl:"):
            for player, tid in _pairs(data).items():
                snap.players[player] = tid
                if keys.players(player) != name:
                    snap.misplaced[player] = f"player index entry in {name}, looked up in {keys.players(player)}"
        elif kind == "hash" and name.startswith("mm:s:"):
            snap.sessions[name[5:]] = _pairs(data)
        elif kind == "zset" and name.startswith("mm:q:"):
            snap.queues[name] = _scored(data)
        elif kind == "zset" and name.startswith(keys.ALLOCATING + ":"):
            for sid, deadline in _scored(data):
                if sid in snap.allocating:
                    snap.misplaced[sid] = f"in two allocation lines, {snap.allocating_line[sid]} and {name}"
                snap.allocating[sid] = deadline
                snap.allocating_line[sid] = name
        elif kind == "zset" and name.startswith(keys.SERVERS_FREE + ":"):
            regional_free.extend(_scored(data))  # the free pools of configured regions
        elif kind == "hash" and name.startswith(keys.SERVER_PREFIX):
            snap.servers[name[len(keys.SERVER_PREFIX):]] = _pairs(data)
        elif name.startswith(("mm:t:", "mm:tq:", "mm:pl:", "mm:s:", "mm:q:")):
            snap.odd[name] = kind
    # Sessions a claim created and no script loaded yet (scripts/lib/claims.lua load_session()).
    for sid, value in _pairs(found.get(keys.PENDING_SESSIONS, [])).items():
        if sid in snap.sessions:
            snap.misplaced[sid] = f"pending session entry and a {snap.sessions[sid].get('st')} session hash at once"
            continue
        snap.sessions[sid] = keys.unpack_pending_session(value)
    # A queued ticket is a record in its bucket (no record of its own): exactly one of the two.
    for bucket, tid, record in queued:
        if bucket != keys.queued_tickets(tid):
            snap.misplaced[tid] = f"queued record in {bucket}, looked up in {keys.queued_tickets(tid)}"
        if tid in snap.tickets:
            snap.misplaced[tid] = f"queued record in {bucket} and a {snap.tickets[tid].get('s')} record at once"
            continue
        snap.tickets[tid] = keys.unpack_queued(record)
        snap.ttls[tid] = -1
    snap.accepting = dict(_scored(found.get("mm:acc", [])))
    for sid, deadline in _scored(found.get("mm:alloc", [])):  # the single line of releases before
        snap.allocating.setdefault(sid, deadline)
        snap.allocating_line.setdefault(sid, "mm:alloc")
    snap.allocating_regions = set(found.get(keys.ALLOCATING_REGIONS, []))
    snap.assigned = set(found.get("mm:asg", []))
    snap.free = dict(_scored(found.get("mm:sv:free", [])))
    snap.free.update(regional_free)
    snap.busy = set(found.get("mm:sv:busy", []))
    snap.ends = dict(_scored(found.get(keys.MATCH_ENDS, [])))
    snap.counts = _pairs(found.get("mm:n", []))
    # A claim records its tickets' new state in mm:cl; the next script that loads a ticket
    # applies it (scripts/lib/claims.lua load()). Overlay it the same way: these tickets are matched.
    for tid, pending in _pairs(found.get(keys.CLAIMED, [])).items():
        t = snap.tickets.get(tid)
        if t is None or t.get("s") != "queued":
            snap.stale_claims[tid] = f"claim entry {pending!r} for a ticket that is {t.get('s') if t else 'gone'}"
            continue
        sid, deadline, at = pending.split("|")
        snap.tickets[tid] = {**t, "s": "matched", "x": sid, "d": deadline, "u": at, "v": str(int(t["v"]) + 1)}
    return snap


# Ticket event -> the states a ticket may be in just before it (None: no event yet).
_TICKET_STEPS = {
    "queued": (None,),
    "matched": ("queued",),
    "accepted": ("matched",),
    "requeued": ("matched",),
    "assigned": ("matched",),
    "cancelled": ("queued", "matched"),
    "expired": ("queued",),
    "finished": ("assigned",),
}
_EVENT_STATE = {"accepted": "matched", "requeued": "queued"}


def read_event_log(client: redis.Redis, until: str | None = "+") -> list[dict]:
    """The log from its start to `until` (inclusive; "+": its end; None: nothing)."""
    if until is None:
        return []
    events, cursor = [], "-"
    while True:
        batch = client.xrange(keys.EVENT_LOG, cursor, until, count=5000)
        if not batch:
            return events
        events.extend(decode_event(entry_id, fields) for entry_id, fields in batch)
        cursor = "(" + batch[-1][0]


def stored_status(client: redis.Redis, tid: str) -> tuple[str | None, int]:
    """The ticket's (status, version) as Redis holds it, read atomically (a pending claim not
    applied: call it after a GET, which applies it)."""
    reply = client.eval("""
local t = redis.call('GET', KEYS[1])
if t then return { string.match(t, '^([^|]*)|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|([^|]*)') } end
local record = redis.call('HGET', KEYS[2], ARGV[1])
if not record then return {} end
return { 'queued', string.match(record, '^[^|]*|[^|]*|[^|]*|([^|]*)') }
""", 2, keys.ticket(tid), keys.queued_tickets(tid), tid)
    return (reply[0], int(reply[1])) if reply else (None, 0)


def split(text: str | None, separators: str = ",") -> list[str]:
    if not text:
        return []
    for sep in separators[1:]:
        text = text.replace(sep, separators[0])
    return [part for part in text.split(separators[0]) if part]


def ticket_players(t: dict) -> list[str]:
    return [t["p"], *split(t.get("y"))] if "p" in t else split(t.get("y"))


def present_players(t: dict) -> list[str]:
    """The ticket's players still with it: a party member who left its match (backfill's leave)
    is in `lf`, freed from the player index and free to queue again."""
    gone = set(split(t.get("lf")))
    return [p for p in ticket_players(t) if p not in gone]


class Checker:
    def __init__(self, client: redis.Redis, ledger: Ledger, *, slack_s: float, retention_s: float,
                 heartbeat_ttl_s: float, silenced: list[tuple[str, float]]) -> None:
        self._client = client
        self._ledger = ledger
        self._slack_ms = slack_s * 1000
        self._retention_s = retention_s
        self._heartbeat_ttl_ms = heartbeat_ttl_s * 1000
        self._silenced = silenced  # (server id, wall clock when it went silent)
        self.violations: list[Violation] = []
        self.snap: Snapshot | None = None

    def _bad(self, kind: str, subject: str, detail: str) -> None:
        self.violations.append(Violation(kind, subject, detail))

    def check_redis(self) -> Snapshot:
        snap = self.snap = snapshot(self._client)
        self._check_tickets(snap)
        self._check_players(snap)
        self._check_sessions(snap)
        self._check_servers(snap)
        self._check_counters(snap)
        self._check_ledger(snap)
        self._check_events(snap)
        self._check_backfills(snap)
        for tid, detail in snap.stale_claims.items():
            self._bad("state", tid, detail)
        for subject, detail in snap.misplaced.items():
            self._bad("state", subject, detail)
        for name, kind in snap.odd.items():
            self._bad("state", name, f"unexpected key type {kind}")
        return snap

    # --- tickets ---

    def _check_tickets(self, snap: Snapshot) -> None:
        in_queues: dict[str, list[tuple[str, str, float]]] = defaultdict(list)
        for queue, members in snap.queues.items():
            for member, score in members:
                in_queues[member.split("|", 1)[0]].append((queue, member, score))
        for queue_ticket in in_queues.keys() - snap.tickets.keys():
            self._bad("state", queue_ticket, f"queue member of a ticket Redis does not hold: {in_queues[queue_ticket]}")
        for tid, t in snap.tickets.items():
            status = t.get("s")
            places = in_queues.get(tid, [])
            if status not in STATUSES:
                self._bad("state", tid, f"unknown status {status!r}")
                continue
            if status == "queued":
                self._check_queued(snap, tid, t, places)
            elif places:
                self._bad("duplicated" if status in LIVE else "state", tid,
                          f"{status} yet still in queue(s) {[p[0] for p in places]}")
            if status == "matched":
                self._check_matched(snap, tid, t)
            elif status == "assigned":
                self._check_assigned(snap, tid, t)
            if status in TERMINAL:
                if not t.get("w"):
                    self._bad("reason", tid, f"{status} without a reason")
                if snap.ttls.get(tid, -1) < 0:
                    self._bad("retention", tid, f"{status} ticket without an expiry")
                if status != "finished" and t.get("x"):
                    self._bad("state", tid, f"{status} yet still names session {t['x']}")
            if status in LIVE:
                for player in present_players(t):
                    if snap.players.get(player) != tid:
                        self._bad("state", tid, f"live ticket, but the player index maps {player} to "
                                                f"{snap.players.get(player)!r}: a new ticket for them would be accepted")

    def _check_queued(self, snap: Snapshot, tid: str, t: dict, places: list) -> None:
        expected_queue = f"mm:q:{t.get('m')}:{t.get('g', '')}"
        expected_member = f"{tid}|{t.get('r')}|{t.get('n')}|{t.get('e')}" + (f"|{t['a']}" if t.get("a") else "")
        if len(places) != 1:
            self._bad("duplicated" if len(places) > 1 else "stranded", tid,
                      f"queued ticket in {len(places)} queues: {[p[0] for p in places]}")
            return
        queue, member, score = places[0]
        if queue != expected_queue or member != expected_member:
            self._bad("state", tid, f"queued as {member!r} in {queue}, expected {expected_member!r} in {expected_queue}")
        if score < snap.now_ms - self._slack_ms:
            self._bad("stranded", tid, f"queued {(snap.now_ms - score) / 1000:.1f} s past its TTL deadline")
        if t.get("x"):
            self._bad("state", tid, f"queued yet names session {t['x']}")

    def _check_matched(self, snap: Snapshot, tid: str, t: dict) -> None:
        sid = t.get("x")
        s = snap.sessions.get(sid or "")
        if not s or s.get("st") not in ("accepting", "allocating"):
            self._bad("stranded", tid, f"matched in session {sid!r} which is {s.get('st') if s else 'gone'}")
            return
        if tid not in split(s.get("tk"), ",;"):
            self._bad("state", tid, f"matched in session {sid} that does not list it")

    def _check_assigned(self, snap: Snapshot, tid: str, t: dict) -> None:
        mid = t.get("x")
        s = snap.sessions.get(mid or "")
        if not s or s.get("st") != "assigned":
            self._bad("stranded", tid, f"assigned to match {mid!r} which is {s.get('st') if s else 'gone'}")

    def _check_players(self, snap: Snapshot) -> None:
        holders: dict[str, list[str]] = defaultdict(list)
        for tid, t in snap.tickets.items():
            if t.get("s") in LIVE:
                for player in present_players(t):
                    holders[player].append(tid)
        for player, tids in holders.items():
            if len(tids) > 1:
                for tid in tids:
                    self._bad("duplicated", tid, f"player {player} is in {len(tids)} live tickets: {tids}")

    # --- sessions and matches ---

    def _check_sessions(self, snap: Snapshot) -> None:
        live_sessions_of: dict[str, list[str]] = defaultdict(list)
        matches_of_server: dict[str, list[str]] = defaultdict(list)
        for sid, s in snap.sessions.items():
            state = s.get("st")
            ids = split(s.get("tk"), ",;")
            if state in ("accepting", "allocating", "assigned"):
                for tid in ids:
                    live_sessions_of[tid].append(sid)
                want = "matched" if state != "assigned" else "assigned"
                for tid in ids:
                    t = snap.tickets.get(tid, {})
                    if t.get("s") != want or t.get("x") != sid:
                        self._bad("state", tid, f"{state} session {sid} lists it, but the ticket is "
                                                f"{t.get('s', 'gone')} in {t.get('x')!r}")
            if state == "accepting":
                deadline = snap.accepting.get(sid)
                if deadline is None:
                    self._bad("stranded", sid, "accepting session missing from the ready-check deadlines")
                elif deadline < snap.now_ms - self._slack_ms:
                    self._bad("stranded", sid, f"ready check {(snap.now_ms - deadline) / 1000:.1f} s past its deadline")
            elif state == "allocating":
                deadline = snap.allocating.get(sid)
                if deadline is None:
                    self._bad("stranded", sid, "allocating session missing from the allocation deadlines")
                elif snap.allocating_line[sid] not in (keys.allocating(s.get("rg")), keys.ALLOCATING):
                    self._bad("state", sid, f"a session of region {s.get('rg')!r} waits in {snap.allocating_line[sid]}")
                elif (s.get("rg") and snap.allocating_line[sid] != keys.ALLOCATING
                      and s.get("rg") not in snap.allocating_regions):
                    # Allocation and deadlines walk only the lines of the regions recorded.
                    self._bad("stranded", sid, f"a session waits in the line of region {s.get('rg')!r}, "
                                               f"which is not in {keys.ALLOCATING_REGIONS}")
                elif deadline < snap.now_ms - self._slack_ms:
                    self._bad("stranded", sid, f"allocation {(snap.now_ms - deadline) / 1000:.1f} s past its deadline")
            elif state == "assigned":
                if sid not in snap.assigned:
                    self._bad("state", sid, "assigned match missing from the assigned set")
                server = snap.servers.get(s.get("sv", ""), {})
                if server.get("m") != sid:
                    self._bad("stranded", sid, f"assigned to server {s.get('sv')!r} whose match is {server.get('m')!r}")
                matches_of_server[s.get("sv", "")].append(sid)
                # Invariant 4: every assigned match ends within its mode's max_match_s.
                end = snap.ends.get(sid)
                if end is None:
                    self._bad("stranded", sid, "assigned match without a max-duration deadline")
                elif end < snap.now_ms - self._slack_ms:
                    self._bad("stranded", sid, f"match {(snap.now_ms - end) / 1000:.1f} s past its max duration")
            elif state != "finished":
                self._bad("state", sid, f"session in unknown state {state!r}")
            if state in ("assigned", "finished"):
                self._check_silenced_allocation(sid, s)
        for tid, sids in live_sessions_of.items():
            if len(sids) > 1:
                self._bad("duplicated", tid, f"ticket in {len(sids)} live sessions/matches: {sids}")
        for server, mids in matches_of_server.items():
            if len(mids) > 1:
                self._bad("duplicated", server, f"server in {len(mids)} matches: {mids}")
        for sid in snap.accepting.keys() | snap.allocating.keys():
            if sid not in snap.sessions and (snap.accepting.get(sid, snap.allocating.get(sid, 0))
                                             < snap.now_ms - self._slack_ms):
                self._bad("state", sid, "deadline entry of a session that no longer exists, long due")

    def _check_silenced_allocation(self, sid: str, s: dict) -> None:
        for server_id, silent_at in self._silenced:
            if s.get("sv") == server_id and int(s.get("as", 0)) > (silent_at * 1000 + self._heartbeat_ttl_ms + 1500):
                self._bad("state", sid, f"allocated server {server_id} "
                                        f"{(int(s['as']) - silent_at * 1000) / 1000:.1f} s after its last heartbeat")

    def _check_servers(self, snap: Snapshot) -> None:
        holders: dict[str, list[str]] = defaultdict(list)
        for server_id, sv in snap.servers.items():
            holders[sv.get("a", "")].append(server_id)
        for address, ids in holders.items():
            if len(ids) > 1:  # one address is one server: two ids would host two matches there
                self._bad("duplicated", address, f"address held by {len(ids)} servers: {sorted(ids)}")
        for server_id, sv in snap.servers.items():
            mid = sv.get("m")
            if mid:
                s = snap.sessions.get(mid, {})
                if s.get("st") != "assigned" or s.get("sv") != server_id:
                    self._bad("stranded", server_id, f"busy with match {mid} which is {s.get('st', 'gone')}: "
                                                     "never allocated again")
                if server_id not in snap.busy:
                    self._bad("state", server_id, "busy server missing from the busy set")
                if server_id in snap.free:
                    self._bad("duplicated", server_id, f"busy with {mid} and in the free pool at once")
            elif server_id in snap.busy:
                self._bad("state", server_id, "in the busy set without a match")

    def _check_counters(self, snap: Snapshot) -> None:
        matched: dict[str, int] = defaultdict(int)
        assigned: dict[str, int] = defaultdict(int)
        for t in snap.tickets.values():
            if t.get("s") == "matched":
                matched[t.get("m", "")] += 1
            elif t.get("s") == "assigned":
                assigned[t.get("m", "")] += 1
        modes = {k.split(":", 1)[1] for k in snap.counts} | matched.keys() | assigned.keys()
        for mode in modes:
            for name, real in (("m", matched[mode]), ("a", assigned[mode])):
                stored = int(snap.counts.get(f"{name}:{mode}", 0))
                if stored != real:
                    self._bad("state", f"mm:n {name}:{mode}", f"counter says {stored}, tickets say {real}")

    # --- backfills and rosters ---

    def _check_backfills(self, snap: Snapshot) -> None:
        """Every assigned match's roster is exactly its tickets' players still there; every open
        backfill belongs to an assigned match that lists it, in the open and expiry sets; no team
        holds more players plus open places than its size (tests/store/invariants.py)."""
        try:
            check_rosters_and_backfills(self._client, snap.tickets, snap.sessions, TEAM_SIZES)
        except AssertionError as error:
            self._bad("state", "backfills", str(error))

    # --- the event log: an event exactly when its transition happened ---

    def _check_events(self, snap: Snapshot) -> None:
        """Replays each ticket's events through the state machine: every step must be a legal
        transition and the last must leave the ticket in the state Redis holds. A transition
        without its event, or an event without its transition, breaks one of the two. (A run
        keeps far fewer events than [events] max_len, so nothing was trimmed.)"""
        state: dict[str, str] = {}
        for event in read_event_log(self._client, until=snap.last_event_id):
            tid, kind = event.get("ticket_id"), event["type"]
            if not tid or not kind.startswith("ticket."):
                continue
            to = kind.split(".", 1)[1]
            before = state.get(tid)
            allowed = _TICKET_STEPS.get(to, ())
            backfilled = to == "assigned" and before == "queued" and "backfill_id" in event["data"]
            if before not in allowed and not backfilled:
                self._bad("state", tid, f"event {kind} ({event['id']}) after {before or 'no event'}")
            state[tid] = _EVENT_STATE.get(to, to)
        for tid, t in snap.tickets.items():
            if state.get(tid) != t.get("s"):
                self._bad("state", tid, f"Redis holds it {t.get('s')}, its events say {state.get(tid) or 'nothing'}")
        for tid in self._ledger.records:
            if tid not in state:
                self._bad("lost", tid, "acknowledged, but the event log never had it queued")

    # --- what clients were told ---

    def _check_ledger(self, snap: Snapshot) -> None:
        now = time.time()
        for tid, record in self._ledger.records.items():
            t = snap.tickets.get(tid)
            for anomaly in record.anomalies:
                kind = "lost" if ("went back" in anomaly or "left terminal" in anomaly or "404" in anomaly) else "reason"
                self._bad(kind, tid, f"seen by its client: {anomaly}")
            if len(record.match_ids) > 1:
                self._bad("duplicated", tid, f"its client saw it in matches {sorted(record.match_ids)}")
            if t is None:
                if record.terminal is not None and now - record.acked_at > self._retention_s:
                    continue  # purged after its retention: legitimate
                self._bad("lost", tid, f"acknowledged ({record.mode}, players {list(record.players)}), last seen "
                                       f"{record.statuses[-1] if record.statuses else '?'}, unknown to Redis")
                continue
            if int(t.get("v", 0)) < record.max_version:
                self._bad("lost", tid, f"Redis holds version {t.get('v')} ({t.get('s')}), "
                                       f"its client saw version {record.max_version}")
            if record.terminal is not None and t.get("s") != record.terminal[0]:
                self._bad("lost", tid, f"its client saw it {record.terminal[0]}, Redis says {t.get('s')}")
            if sorted(ticket_players(t)) != sorted(record.players):
                self._bad("state", tid, f"players {ticket_players(t)} differ from those acknowledged {list(record.players)}")
        for tid in self._ledger.orphans:
            t = snap.tickets.get(tid)
            if t is not None and t.get("s") in ("queued", "matched"):
                self._bad("stranded", tid, f"ticket created without an answer to its client is still {t.get('s')}")

    # --- the API agrees ---

    def check_api(self, url: str) -> int:
        """Reads every acknowledged ticket through the API; returns how many were read.
        (A read refreshes a ticket's TTL: this runs after the Redis checks.)"""
        read = 0
        for tid, record in self._ledger.records.items():
            answer = call(url, "GET", f"/v1/tickets/{tid}", token=record.token, timeout=10)
            stored, version = stored_status(self._client, tid)
            if answer.status == 404 and stored is None:
                continue
            if answer.status != 200:
                self._bad("api", tid, f"GET answered {answer.status} {answer.body} while Redis holds {stored!r}")
                continue
            read += 1
            view = answer.body
            # Replicas may still be ticking: a ticket that changed after the GET (a higher
            # version in Redis) moved on, it does not contradict the answer.
            if view.get("status") != stored and version <= view.get("version", 0):
                self._bad("api", tid, f"GET says {view.get('status')} (version {view.get('version')}), "
                                      f"Redis says {stored} (version {version})")
            if view.get("status") in TERMINAL and not view.get("reason"):
                self._bad("reason", tid, f"GET: {view.get('status')} without a reason")
            if view.get("status") in ("assigned", "finished") and not view.get("assignment"):
                self._bad("api", tid, f"GET: {view.get('status')} without an assignment")
        return read
