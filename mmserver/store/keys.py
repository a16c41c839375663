"""Every Redis key and channel mmserver uses (prefix `mm:`); scripts/lib/keys.lua builds them from LUA_NAMES.

Tickets
- `mm:tq:{first two characters of the id}` hash ticket_id -> a queued ticket's record,
  `mmr|size|enqueued_ms|version|updated_ms|token_hash|mode|region|player|party` (empty
  fields for an absent region, party or first change). Only queued tickets live here: a
  ticket has no key of its own while queued. Ids are random, so 100,000 queued tickets make
  ~25 per bucket, which Redis keeps listpack-encoded (a few bytes of overhead an entry)
  while a bucket holds at most 128 entries of at most 64 bytes (the server's default
  `hash-max-*-entries/value`); past that a bucket converts to a hashtable, costing about what
  a key per ticket would (around 400,000+ queued tickets, or long player ids or parties).
- `mm:t:{ticket_id}` string, every state but queued: one record
  `s|x|c|d|j|lf|r|n|e|v|u|k|m|g|p|y|a|w` (TICKET_FIELDS; empty = absent), read with one GET
  and written with one SET: s status, x session/match id, c accepted ("1"), d TTL deadline
  kept while matched, j join token (assigned), lf party members who left, then the queued
  record's fields (r mmr, n size (1 + party), e enqueued (ms), v version, u updated (ms), k
  token hash, m mode, g region, p player, y party (comma separated), a match profile), then w
  the terminal reason, the only field that may hold '|'. Terminal tickets get an expiry
  (retention). A ticket leaving the queue moves from its queued record to this one, and back
  when it is requeued, in the same script: it is always in exactly one of the two. (Until
  this layout a ticket out of the queue was a hash of the same fields: replicas of that
  version cannot read these records; see docs/DEPLOY.md, "Upgrading".)
- `mm:ttl` hash mode -> ticket TTL (ms), written by the create script (the configuration's);
  also queue key -> "1" once that queue is in `mm:qk` and its region in `mm:qr:{mode}` (both
  only ever grow), so a creation checks both in the read of the TTL (mode names hold no ':',
  queue keys always do).
- `mm:cl` hash ticket_id -> "session|ttl_deadline|claimed_ms": claims not yet written into
  the ticket. A claim records its tickets here in one batched HSET; the first script
  that loads such a ticket (lib/claims.lua load()) applies it, so no script sees it as queued.
- `mm:pl:{first three hex digits of SHA-1(player_id)}` hash player_id -> live ticket id
  (every party member too): the "player busy" index, in 4096 listpack buckets like `mm:tq:`.
- `mm:q:{mode}:{region}` sorted set, one per queue (region "" when none). Member
  `ticket_id|mmr|size|enqueued_ms` (and the profile, profiles.py) carries everything the
  matcher needs, so a queue is read from its members alone (in parts by score: sessions.py);
  the score is the ticket's TTL deadline (ms), so expiring unread tickets is a ZRANGEBYSCORE
  on the queue itself.
- `mm:qr:{mode}` set of the regions seen in a mode; `mm:qk` set of all queue keys.
- `mm:oldest` hash queue key -> oldest enqueue time (ms) seen by the last tick (for stats).

Loading sessions and matches (a match is a session that got a server; same id)
- `mm:cs` hash session_id -> "state|mode|region|accept_deadline|teams": sessions a claim
  created and no script has loaded yet (lib/claims.lua load_session() writes their hash and
  removes the entry), so a claim writes one batched HSET instead of a hash per session. A
  session is in exactly one of `mm:cs` and `mm:s:`.
- `mm:s:{session_id}` hash: st accepting|allocating|assigned|finished, md mode, rg region,
  tk ticket ids ("a,b;c,d": per team), c ticket count, n accepted, dl accept deadline (ms);
  once assigned: sv server id, ad server address, pl players by team ("a,b;c,d"), as assigned
  at (ms); once finished: fr reason.
- `mm:acc` sorted set session -> accept deadline (ms); `mm:asg` set of assigned match ids.
- `mm:alloc:{region}` sorted set session -> allocation deadline (ms): the sessions waiting
  for a server, one line per region (`mm:alloc:` for none), so that a region without a free
  server keeps only its own sessions waiting (allocate.lua). `mm:allocr` set of the regions
  that have a line (only grows): what puts a session in a line records its region there
  first, and the scripts walk the lines of these regions. `mm:alloc` itself is the single
  line of releases before: allocation moves its sessions into their lines, deadlines still
  time them out.
- `mm:n` hash of counters: `m:{mode}` matched tickets, `a:{mode}` assigned tickets.
- `mm:o` hash of ticket outcome counters, `{mode}:{outcome}` -> tickets that made that
  transition since the data began (outcomes: TICKET_OUTCOMES). Only ever incremented, by the
  script that makes the transition, in the same call: fleet-wide, exact, kept across replica
  restarts. Separate from `mm:n`, whose counters go up and down with the tickets' states.

Dedicated servers
- `mm:svh:{server_id}` hash (a prefix of its own, so no server id can name a key of the
  pool): a address, k kind ("s" static, "r" registered), h last heartbeat
  (ms), g region, m match id while busy, x "1" when it leaves the registry after its match
  (deregistered, or no longer in the static list).
- `mm:sv:free` sorted set of free servers without a region, `mm:sv:free:{region}` of those
  of a configured region; score = last heartbeat (ms), +inf for static ones; a server is
  allocated only if its score is within heartbeat_ttl of now. A free registered server
  silent for `retention_s` leaves the registry.
- `mm:sv:addr` hash address -> server id: one address is one server.
- `mm:sv:busy` set; `mm:sv:hb` sorted set busy registered server -> last heartbeat (ms).
- `mm:sv:static` digest of the static list last reconciled; `mm:sv:st` set of static ids.

Matches
- `mm:end` sorted set assigned match -> end of its mode's max_match_s (ms).
- An assigned ticket's record holds `j`, its join token for that match.

Backfills (docs/BACKFILL.md)
- `mm:bf:{backfill_id}` hash: m match id, o mode, g the match's region, sl open slots
  ("team:role:count,..."; role '' in a mode without roles), c created (ms), x expires (ms),
  st open|filled|cancelled|expired, w reason once ended. An ended backfill keeps its hash for
  the retention (a repeated cancel answers its end), with an EXPIRE.
- `mm:bfo:{mode}` sorted set open backfill -> created (ms): what the tick serves, oldest first.
- `mm:bfx` sorted set open backfill -> expiry (ms), processed by deadlines.lua.
- The match's hash gains bf (its open backfill ids, comma separated: bounded by its open
  slots), mv (its roster version, absent = 1) and lf (the last players who left, for a
  repeated leave: at most LEFT_KEPT). A party ticket some of whose players left holds them in
  lf (comma separated); they are off the roster and out of the player index.

Idempotent creation
- `mm:ik:{digest of player and key}` string "ticket_id|sealed token", expiring with the
  mode's ticket TTL (tickets.idempotency_slot).

Replicas and locks
- `mm:r:{replica_id}` JSON info with a TTL; `mm:replicas` sorted set id -> expiry (ms).
- `mm:lock:{name}` short SET NX PX locks (an optimisation, never needed for correctness).

Events
- `mm:ev` stream, the event log (SPEC "Events (v2)"): every script that makes a transition
  appends its events here in the same call. Entry fields, always these and in this order (Redis
  then stores the names once per block of entries): y type, t ticket id, m match id, o mode
  (each '' when the event has none), d data (a JSON object). The entry id is the event id and
  its time. Trimmed to the `[events]` bounds: by length at every append (MAXLEN ~), by age at
  every tick (deadlines.lua, MINID ~).

Webhooks (docs/WEBHOOKS.md; store/deliveries.py, never the Lua scripts)
- Consumer group `webhooks` on `mm:ev` and on `mm:wh:replay`: its pending entries are the events
  being delivered or waiting for a retry (the delivery count is the attempt count); consumers
  are the replicas' ids, removed once idle and owning nothing.
- `mm:wh:dead` stream of dead letters: fields i event id, y t m o d the event's own fields, n
  attempts, e last error. The entry id is when it died. Trimmed at every append (MAXLEN ~
  `[webhooks] max_dead_letters`).
- `mm:wh:replay` stream: dead letters an operator replayed, fields as `mm:wh:dead`; delivered by
  the same group and deleted once delivered (MAXLEN ~ max_dead_letters as well).

Channels: `mm:events` (changed ticket ids, comma separated); `mm:views` (ids of tickets whose
view changed without a new version: `matching.blocked_by`, a match's roster).

The Lua scripts get every name from here: scripts.py writes LUA_NAMES' values into their code
in place of the names (lua_constants), and no script spells a key itself
(tests/store/test_key_names.py).
"""
from __future__ import annotations

import hashlib
from typing import Mapping

PREFIX = "mm:"
EVENTS_CHANNEL = "mm:events"
# Tickets whose view changed while their version did not (a tick's explanation, a match's
# roster): replicas drop their cached views (store/viewcache.py); long-polls are not woken.
VIEWS_CHANNEL = "mm:views"

TTLS = "mm:ttl"
QUEUE_KEYS = "mm:qk"
OLDEST = "mm:oldest"
ACCEPTING = "mm:acc"
ALLOCATING = "mm:alloc"  # the lines' prefix, and the single line of releases before
ALLOCATING_REGIONS = "mm:allocr"
ASSIGNED = "mm:asg"
COUNTS = "mm:n"
OUTCOMES = "mm:o"
SERVERS_FREE = "mm:sv:free"
SERVER_ADDRESSES = "mm:sv:addr"
STATIC_SERVERS = "mm:sv:st"
MATCH_ENDS = "mm:end"
SERVERS_BUSY = "mm:sv:busy"
SERVERS_HEARTBEAT = "mm:sv:hb"
REPLICAS = "mm:replicas"
CLAIMED = "mm:cl"
PENDING_SESSIONS = "mm:cs"
EVENT_LOG = "mm:ev"
BACKFILL_EXPIRY = "mm:bfx"
STATIC_DIGEST = "mm:sv:static"
WEBHOOK_GROUP = "webhooks"  # a consumer group name, not a key: on EVENT_LOG and WEBHOOK_REPLAY
WEBHOOK_DEAD = "mm:wh:dead"
WEBHOOK_REPLAY = "mm:wh:replay"

# Prefixes of the key families (one key per ticket, session, server...).
TICKET_PREFIX = "mm:t:"
QUEUED_PREFIX = "mm:tq:"
PLAYERS_PREFIX = "mm:pl:"
SESSION_PREFIX = "mm:s:"
SERVER_PREFIX = "mm:svh:"  # its own family: no server id can name mm:sv:free and the like
QUEUE_PREFIX = "mm:q:"
# Per queue, why each ticket left unmatched waits, by the last tick: one hash per queue whose
# fields are buckets of tickets (why_bucket), each holding '\n<ticket id>=<rule name>' per
# ticket, plus '@by' and '@counts' (see Sessions.record_blocked and why.lua).
WHY_PREFIX = "mm:why:"
REGIONS_PREFIX = "mm:qr:"
REPLICA_PREFIX = "mm:r:"
IDEMPOTENCY_PREFIX = "mm:ik:"
LOCK_PREFIX = "mm:lock:"
BACKFILL_PREFIX = "mm:bf:"
OPEN_BACKFILLS_PREFIX = "mm:bfo:"


def ticket(ticket_id: str) -> str:
    return TICKET_PREFIX + ticket_id


def queued_tickets(ticket_id: str) -> str:
    """The bucket holding the ticket's record while it is queued (field: the ticket id)."""
    return QUEUED_PREFIX + ticket_id[:2]


def players(player_id: str) -> str:
    """The bucket of the player index holding this player (field: the player id)."""
    return PLAYERS_PREFIX + hashlib.sha1(player_id.encode("utf-8")).hexdigest()[:3]


QUEUED_FIELDS = ("r", "n", "e", "v", "u", "k", "m", "g", "p", "y", "a")


def unpack_queued(record: str) -> dict[str, str]:
    """A queued record as the fields a ticket hash would hold (absent ones left out), for
    readers outside the scripts (tests, the invariant checker)."""
    values = record.split("|")
    ticket = {"s": "queued"}
    ticket.update((name, value) for name, value in zip(QUEUED_FIELDS, values) if value != "")
    return ticket


TICKET_FIELDS = ("s", "x", "c", "d", "j", "lf", "r", "n", "e", "v", "u", "k", "m", "g", "p", "y", "a", "w")


def unpack_ticket(record: str) -> dict[str, str]:
    """A ticket's `mm:t:` record as its fields (absent ones left out), for readers outside the
    scripts (tests, the invariant checker). The reason, last, may hold '|'."""
    values = record.split("|", len(TICKET_FIELDS) - 1)
    return {name: value for name, value in zip(TICKET_FIELDS, values) if value != ""}


def pack_ticket(fields: dict[str, str]) -> str:
    """The record of unpack_ticket's fields (tests that write a ticket's state directly)."""
    return "|".join(str(fields.get(name, "")) for name in TICKET_FIELDS)


def unpack_pending_session(value: str) -> dict[str, str]:
    """An `mm:cs` entry as the fields its session hash will hold (for tests and the checker)."""
    state, mode, region, deadline, teams, *extras = value.split("|", 5)
    session = {"st": state, "md": mode, "rg": region, "tk": teams, "n": "0",
               "c": str(len([i for i in teams.replace(";", ",").split(",") if i]))}
    if deadline:
        session["dl"] = deadline
    if extras and extras[0]:
        session["mx"] = extras[0]
    return session


def allocating(region: str | None) -> str:
    """The line of sessions of this region waiting for a server."""
    return f"{ALLOCATING}:{region or ''}"


def session(session_id: str) -> str:
    return SESSION_PREFIX + session_id


def queue(mode: str, region: str | None) -> str:
    return f"{QUEUE_PREFIX}{mode}:{region or ''}"


def why(mode: str, region: str | None) -> str:
    """The explanations of one queue (see Sessions.record_blocked)."""
    return f"{WHY_PREFIX}{mode}:{region or ''}"


def why_bucket(ticket_id: str) -> str:
    """The field of its queue's explanations that holds this ticket's: the first two
    characters of its id, as queued_tickets buckets records (~25 tickets a field at 100,000)."""
    return ticket_id[:2]


def regions(mode: str) -> str:
    return REGIONS_PREFIX + mode


def server(server_id: str) -> str:
    return SERVER_PREFIX + server_id


def backfill(backfill_id: str) -> str:
    return BACKFILL_PREFIX + backfill_id


def open_backfills(mode: str) -> str:
    """The open backfills of one mode, oldest first (score: created ms)."""
    return OPEN_BACKFILLS_PREFIX + mode


def free_servers(region: str | None) -> str:
    """The free pool of a region (SERVERS_FREE itself for servers without one)."""
    return f"{SERVERS_FREE}:{region}" if region else SERVERS_FREE


def idempotency(name: str) -> str:
    return IDEMPOTENCY_PREFIX + name


def replica(replica_id: str) -> str:
    return REPLICA_PREFIX + replica_id


def lock(name: str) -> str:
    return LOCK_PREFIX + name


def matched_count(mode: str) -> str:
    """Field of COUNTS."""
    return f"m:{mode}"


def assigned_count(mode: str) -> str:
    """Field of COUNTS."""
    return f"a:{mode}"


# What the scripts count in OUTCOMES: created (create), matched (claim), assigned (allocate),
# finished (finish, and a match ended by a lost server), cancelled (client cancel, decline,
# missed ready check), expired (ticket TTL).
TICKET_OUTCOMES = ("created", "matched", "assigned", "finished", "cancelled", "expired")


def outcome_count(mode: str, outcome: str) -> str:
    """Field of OUTCOMES (mode names hold no ':')."""
    return f"{mode}:{outcome}"


# The names the Lua scripts use; scripts.py writes their values into the scripts' code.
LUA_NAMES = {
    "TTLS": TTLS, "QUEUE_KEYS": QUEUE_KEYS, "ACCEPTING": ACCEPTING, "ALLOCATING": ALLOCATING,
    "ALLOCATING_REGIONS": ALLOCATING_REGIONS,
    "ASSIGNED": ASSIGNED, "COUNTS": COUNTS, "OUTCOMES": OUTCOMES, "FREE": SERVERS_FREE,
    "BUSY": SERVERS_BUSY, "HEARTBEATS": SERVERS_HEARTBEAT, "ADDRESSES": SERVER_ADDRESSES,
    "STATIC": STATIC_SERVERS, "STATIC_DIGEST": STATIC_DIGEST, "ENDS": MATCH_ENDS,
    "EVENTS": EVENTS_CHANNEL, "VIEWS": VIEWS_CHANNEL, "CLAIMED": CLAIMED, "PENDING_SESSIONS": PENDING_SESSIONS,
    "REPLICAS": REPLICAS, "TICKET_PREFIX": TICKET_PREFIX, "QUEUED_PREFIX": QUEUED_PREFIX,
    "PLAYERS_PREFIX": PLAYERS_PREFIX, "SESSION_PREFIX": SESSION_PREFIX,
    "SERVER_PREFIX": SERVER_PREFIX, "QUEUE_PREFIX": QUEUE_PREFIX, "REGIONS_PREFIX": REGIONS_PREFIX,
    "REPLICA_PREFIX": REPLICA_PREFIX, "WHY_PREFIX": WHY_PREFIX, "EVENT_LOG": EVENT_LOG,
    "BACKFILL_PREFIX": BACKFILL_PREFIX, "OPEN_BACKFILLS_PREFIX": OPEN_BACKFILLS_PREFIX,
    "BACKFILL_EXPIRY": BACKFILL_EXPIRY,
}


def lua_constants(settings: Mapping[str, int] | None = None) -> dict[str, str]:
    """The key names, then the deployment's numeric settings (e.g. EVENT_MAX_LEN), as Lua
    literals: scripts.py writes them into the scripts' code in place of the names."""
    for value in LUA_NAMES.values():
        assert "'" not in value and "\\" not in value, value
    names = {name: f"'{value}'" for name, value in LUA_NAMES.items()}
    return {**names, **{name: str(int(value)) for name, value in (settings or {}).items()}}
