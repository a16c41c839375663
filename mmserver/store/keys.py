"""Every Redis key and channel mmserver uses (prefix `mm:`); scripts/lib.lua mirrors these.

Tickets
- `mm:t:{ticket_id}` hash, short fields to stay small (listpack): s status, v version, m mode,
  p player, y party (comma separated), r mmr, n size (1 + party), g region, e enqueued (ms),
  u updated (ms; absent until the first change), k token hash, l ttl (ms), x session/match
  id, c accepted ("1"), d TTL deadline kept while matched, w reason (terminal). Terminal
  tickets get an EXPIRE (retention).
- `mm:cl` hash ticket_id -> "session|ttl_deadline|claimed_ms": claims not yet written into
  the ticket hash. A claim records its tickets here in one batched HSET; the first script
  that loads such a ticket (lib.lua load()) applies it, so no script sees it as queued.
- `mm:pl` hash player_id -> live ticket id (every party member too): the "player busy" index.
- `mm:q:{mode}:{region}` sorted set, one per queue (region "" when none). Member
  `ticket_id|mmr|size|enqueued_ms` carries everything the matcher needs, so a whole queue is
  one ZRANGE; the score is the ticket's TTL deadline (ms), so expiring unread tickets is a
  ZRANGEBYSCORE on the queue itself and a queued ticket has no other per-ticket entry.
- `mm:qr:{mode}` set of the regions seen in a mode; `mm:qk` set of all queue keys.
- `mm:oldest` hash queue key -> oldest enqueue time (ms) seen by the last tick (for stats).

Loading sessions and matches (a match is a session that got a server; same id)
- `mm:s:{session_id}` hash: st accepting|allocating|assigned|finished, md mode, rg region,
  tk ticket ids ("a,b;c,d": per team), c ticket count, n accepted, dl accept deadline (ms);
  once assigned: sv server id, ad server address, pl players in team order, as assigned at
  (ms); once finished: fr reason.
- `mm:acc` sorted set session -> accept deadline (ms); `mm:alloc` sorted set session ->
  allocation deadline (ms), oldest first; `mm:asg` set of assigned match ids.
- `mm:n` hash of counters: `m:{mode}` matched tickets, `a:{mode}` assigned tickets.

Dedicated servers
- `mm:sv:{server_id}` hash: a address, k kind ("s" static, "r" registered), h last heartbeat
  (ms), m match id while busy.
- `mm:sv:free` sorted set of free servers, score = last heartbeat (ms), +inf for static ones;
  a server is allocated only if its score is within heartbeat_ttl of now.
- `mm:sv:busy` set; `mm:sv:hb` sorted set busy registered server -> last heartbeat (ms).
- `mm:sv:static` digest of the static list last seeded into the pool.

Replicas and locks
- `mm:r:{replica_id}` JSON info with a TTL; `mm:replicas` sorted set id -> expiry (ms).
- `mm:lock:{name}` short SET NX PX locks (an optimisation, never needed for correctness).

Channels: `mm:events` (changed ticket ids, comma separated), `mm:control` (JSON).
"""
from __future__ import annotations

PREFIX = "mm:"
EVENTS_CHANNEL = "mm:events"
CONTROL_CHANNEL = "mm:control"

PLAYERS = "mm:pl"
QUEUE_KEYS = "mm:qk"
OLDEST = "mm:oldest"
ACCEPTING = "mm:acc"
ALLOCATING = "mm:alloc"
ASSIGNED = "mm:asg"
COUNTS = "mm:n"
SERVERS_FREE = "mm:sv:free"
SERVERS_BUSY = "mm:sv:busy"
SERVERS_HEARTBEAT = "mm:sv:hb"
REPLICAS = "mm:replicas"
CLAIMED = "mm:cl"


def ticket(ticket_id: str) -> str:
    return f"mm:t:{ticket_id}"


def session(session_id: str) -> str:
    return f"mm:s:{session_id}"


def queue(mode: str, region: str | None) -> str:
    return f"mm:q:{mode}:{region or ''}"


def regions(mode: str) -> str:
    return f"mm:qr:{mode}"


def server(server_id: str) -> str:
    return f"mm:sv:{server_id}"


def replica(replica_id: str) -> str:
    return f"mm:r:{replica_id}"


def lock(name: str) -> str:
    return f"mm:lock:{name}"


def matched_count(mode: str) -> str:
    """Field of COUNTS."""
    return f"m:{mode}"


def assigned_count(mode: str) -> str:
    """Field of COUNTS."""
    return f"a:{mode}"
