"""Everything that touches Redis: tickets, loading sessions, servers, deadlines, replicas.

The HTTP layer imports only the names of the contract (Store and the errors); the matchmaker
tick also uses Store's tick methods and the result types below. Key layout: keys.py; the Lua
scripts are in scripts/ (the shared library, scripts/lib/, is prepended to each).

Rules the scripts keep:
- Every state change is one script: atomic, one round trip, time from Redis TIME (effects
  replication, the Redis 6.2 default, allows TIME before writes). A replica killed between two
  scripts leaves every ticket where one of them put it.
- A queue member exists exactly while its ticket is queued in that queue; a claim checks the
  members, so two replicas claiming at once never put a ticket in two sessions.
- Every timer is a sorted-set score, handled by whichever replica ticks next, re-checked
  against the current state (idempotent): the queue score is the ticket's TTL deadline,
  `mm:acc` the ready-check deadlines, `mm:alloc:{region}` the allocation deadlines (a line
  per region), `mm:sv:hb` the heartbeats of busy registered servers.
- Ticket TTL: only queued tickets expire ("not polled for N s"). A matched ticket is bounded
  by its ready check and the allocation timeout; its TTL deadline is kept (and refreshed by
  its reads) while it is matched, so if its session fails and its client had stopped polling,
  it expires at the next tick after going back to the queue.
- A busy registered server silent for heartbeat_ttl_s has its match ended with reason
  "server lost" (tickets finished, players free to queue again); it is allocated again only
  after a fresh heartbeat. Static servers are always healthy and never lost.
- Terminal tickets release the player index at once and expire from Redis after the
  retention (1 hour by default); so do finished matches.
- Scripts compute the keys they touch, which works on one Redis or behind Sentinel, not on
  Redis Cluster.
"""
from mmserver.store.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PlayerBusy,
    RedisUnavailable,
    StoreError,
)
from mmserver.store.sessions import ClaimResult, DeadlineCounts
from mmserver.store.store import Store

__all__ = [
    "ClaimResult",
    "Conflict",
    "DeadlineCounts",
    "Forbidden",
    "NotFound",
    "PlayerBusy",
    "RedisUnavailable",
    "Store",
    "StoreError",
]
