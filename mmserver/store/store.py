"""The one object the rest of mmserver talks to for Redis state (see STORE_CONTRACT in docs).

Every state change is one Lua script (atomic, one round trip); times come from Redis TIME
inside the scripts so all replicas share one clock. Redis errors become RedisUnavailable.
"""
from __future__ import annotations

import json
import logging
import re
import secrets
from types import TracebackType
from typing import Any, Collection, Mapping, Sequence

import redis

from mmserver.config import EventsConfig, ModeConfig, ServersConfig
from mmserver.matchmaking import QueuedTicket
from mmserver.matchmaking.backfill import Fill, OpenBackfill, Slot
from mmserver.store import keys
from mmserver.store.backfills import Backfills
from mmserver.store.errors import NotFound, RedisUnavailable
from mmserver.store.events import EventLog, Page
from mmserver.store.replicas import Replicas
from mmserver.store.scripts import Scripts
from mmserver.store.servers import Servers
from mmserver.store.sessions import AllocationPage, ClaimResult, Claims, DeadlineCounts, Sessions
from mmserver.store.tickets import Tickets, token_hash
from mmserver.store.viewcache import ViewCache

logger = logging.getLogger(__name__)

DEFAULT_RETENTION_S = 3600  # terminal tickets and finished matches stay readable this long


# Answers that mean "Redis cannot serve this now, retry shortly" rather than a bug: a replica
# during a Sentinel failover (READONLY, MASTERDOWN), a long script or load (BUSY), maxmemory.
_TRANSIENT_ERRORS = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError (LOADING)
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.OutOfMemoryError,
    OSError,
)
# The same answers raised by redis.call inside a script arrive wrapped ("Error running script
# ... -NOREPLICAS ..."), so the code is looked for anywhere in the message, as a word.
_TRANSIENT_CODES = re.compile(r"(?:^|[\s:-])(BUSY|MASTERDOWN|NOREPLICAS|READONLY|OOM|LOADING|TRYAGAIN)\b")


class _RedisErrors:
    """`with _RedisErrors():` turns Redis's transient failures into RedisUnavailable. A class
    rather than a @contextmanager generator: it wraps every store call, and is 1-2 us cheaper."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> bool:
        if error is None:
            return False
        if isinstance(error, _TRANSIENT_ERRORS):
            raise RedisUnavailable(f"Redis is unavailable: {error}") from error
        if isinstance(error, redis.exceptions.ResponseError) and _TRANSIENT_CODES.search(str(error)):
            raise RedisUnavailable(f"Redis is unavailable: {error}") from error
        return False


class ClaimBatches:
    """sessions.Claims, its Redis errors turned into RedisUnavailable as every store call's."""

    __slots__ = ("_claims",)

    def __init__(self, claims: Claims) -> None:
        self._claims = claims

    @property
    def in_flight(self) -> int:
        return self._claims.in_flight

    def send(self, proposals: Sequence[Sequence[Sequence[str]]], choices: Sequence[str] | None = None) -> None:
        with _RedisErrors():
            self._claims.send(proposals, choices)

    def receive(self) -> list[ClaimResult]:
        with _RedisErrors():
            return self._claims.receive()

    def close(self) -> None:
        with _RedisErrors():
            self._claims.close()


class Store:
    def __init__(self, client: redis.Redis, modes: Mapping[str, ModeConfig], servers: ServersConfig,
                 *, retention_s: int = DEFAULT_RETENTION_S, regions: Sequence[str] = (),
                 events: EventsConfig = EventsConfig(), view_cache: ViewCache | None = None) -> None:
        """`view_cache`: ticket views kept in this replica's memory (viewcache.py); it must be
        fed the messages of keys.EVENTS_CHANNEL and keys.VIEWS_CHANNEL and told when the
        subscriber connects and disconnects. None: every read is a read script."""
        self._client = client
        self._modes = modes
        self._servers_config = servers
        self._scripts = Scripts(client, settings={"EVENT_MAX_LEN": events.max_len,
                                                  "EVENT_MAX_AGE_MS": int(events.max_age_s * 1000)})
        allocation_timeout_ms = max(1, int(servers.allocation_timeout_s * 1000))
        self._tickets = Tickets(self._scripts, modes, retention_s=retention_s,
                                allocation_timeout_ms=allocation_timeout_ms, regions=regions,
                                cache=view_cache)
        self._sessions = Sessions(client, self._scripts, retention_s=retention_s,
                                  allocation_timeout_ms=allocation_timeout_ms,
                                  heartbeat_ttl_ms=max(1, int(servers.heartbeat_ttl_s * 1000)),
                                  static_servers=servers.static, static_regions=servers.static_regions,
                                  max_match_ms={name: max(1, int(mode.max_match_s * 1000))
                                                for name, mode in modes.items()},
                                  server_retention_ms=max(1, int(servers.retention_s * 1000)),
                                  regions=regions)
        self._regions = tuple(regions)
        self._servers = Servers(self._scripts, retention_s=retention_s)
        self._replicas = Replicas(client, self._scripts)
        self._backfills = Backfills(client, self._scripts, retention_s=retention_s,
                                    members=self._sessions.queued_members)
        self._events = EventLog(client)

    # --- tickets ---
    # Ticket calls take the ticket's token, or `access` for a caller that is not its holder:
    # tickets.BACKEND_ACCESS (a game backend) or tickets.player_access(player_id).
    def create_ticket(self, *, player_id: str, mode: str, mmr: float, region: str | None,
                      party: Sequence[str], idempotency_key: str | None = None,
                      attributes: Mapping[str, Any] | None = None,
                      latencies: Mapping[str, float] | None = None,
                      roles: Sequence[Sequence[str]] = ()) -> tuple[dict, str]:
        with _RedisErrors():
            return self._tickets.create(player_id=player_id, mode=mode, mmr=mmr, region=region,
                                        party=party, idempotency_key=idempotency_key,
                                        attributes=attributes, latencies=latencies, roles=roles)

    def read_ticket(self, ticket_id: str, token: str | None = None, *, access: str | None = None) -> dict:
        with _RedisErrors():
            return self._tickets.read(ticket_id, _access(token, access))

    def cancel_ticket(self, ticket_id: str, token: str | None = None, *, access: str | None = None) -> dict:
        with _RedisErrors():
            return self._tickets.cancel(ticket_id, _access(token, access))

    def accept(self, ticket_id: str, token: str | None = None, *, access: str | None = None) -> dict:
        with _RedisErrors():
            return self._tickets.accept(ticket_id, _access(token, access))

    def decline(self, ticket_id: str, token: str | None = None, *, access: str | None = None) -> dict:
        with _RedisErrors():
            return self._tickets.decline(ticket_id, _access(token, access))

    def player(self, player_id: str) -> dict:
        """{"player_id", "ticket": view} of the player's live ticket; NotFound if none."""
        with _RedisErrors():
            return self._tickets.player(player_id)

    def release_player(self, player_id: str) -> dict:
        """An operator frees a player: its live ticket cancelled, or its match left."""
        with _RedisErrors():
            return self._tickets.release(player_id)

    # --- dedicated servers and matches ---
    def heartbeat_server(self, server_id: str, address: str, region: str | None = None,
                         sent: str | None = None) -> dict:
        with _RedisErrors():
            return self._servers.heartbeat(server_id, address, region, sent)

    def deregister_server(self, server_id: str) -> dict:
        with _RedisErrors():
            return self._servers.deregister(server_id)

    def finish_match(self, match_id: str, reason: str = "match finished") -> dict:
        with _RedisErrors():
            return self._servers.finish(match_id, reason)

    def match(self, match_id: str) -> dict:
        """The match document with its roster (SPEC "Matches and game servers")."""
        with _RedisErrors():
            return self._servers.match(match_id)

    def assigned_matches(self, limit: int) -> dict:
        """Up to `limit` running (assigned) matches, newest first, and how many there are:
        {"matches": [match documents], "total": N}. The set of assigned matches has no order:
        with more than `limit` of them, which ones come back is Redis's random pick. A match that
        ends between the two reads is left out."""
        with _RedisErrors():
            with self._client.pipeline(transaction=False) as pipe:
                pipe.scard(keys.ASSIGNED)
                pipe.srandmember(keys.ASSIGNED, limit)
                total, ids = pipe.execute()
            found = []
            for match_id in ids or []:
                try:
                    found.append(self._servers.match(match_id))
                except NotFound:
                    continue
        found.sort(key=lambda match: (match.get("created_at") or 0, match["match_id"]), reverse=True)
        return {"matches": found, "total": int(total)}

    # --- backfills and leaves (docs/BACKFILL.md) ---
    def match_mode(self, match_id: str) -> str:
        """The mode of an existing match; NotFound, or Conflict for a loading session."""
        with _RedisErrors():
            return self._backfills.match_mode(match_id)

    def create_backfill(self, match_id: str, mode: ModeConfig, slots: Sequence[Slot], ttl_s: float) -> dict:
        with _RedisErrors():
            return self._backfills.create(match_id, mode, slots, ttl_s)

    def cancel_backfill(self, match_id: str, backfill_id: str) -> dict:
        with _RedisErrors():
            return self._backfills.cancel(match_id, backfill_id)

    def leave_match(self, match_id: str, player_id: str) -> dict:
        with _RedisErrors():
            return self._backfills.leave(match_id, player_id)

    def open_backfills(self, mode: str, limit: int) -> list[OpenBackfill]:
        with _RedisErrors():
            return self._backfills.open(mode, limit)

    def fill_backfills(self, mode: str, region: str | None, team_size: int, fills: Sequence[Fill]) -> list[str]:
        with _RedisErrors():
            return self._backfills.fill(mode, region, team_size, fills)

    # --- the event log ---
    def events(self, after: str | None, *, limit: int, types: Collection[str] = (),
               modes: Collection[str] = ()) -> Page:
        """A page of the event log after the cursor `after` (see store/events.py)."""
        with _RedisErrors():
            return self._events.read(after, limit=limit, types=types, modes=modes)

    # --- the matchmaker tick (mmserver/ticker.py) ---
    def now(self) -> float:
        """Redis's clock, the one every script uses."""
        with _RedisErrors():
            seconds, micros = self._client.time()
        return seconds + micros / 1e6

    def regions(self, mode: str) -> list[str | None]:
        with _RedisErrors():
            return self._sessions.regions(mode)

    def read_queue(self, mode: str, region: str | None) -> list[QueuedTicket]:
        with _RedisErrors():
            return self._sessions.read_queue(mode, region)

    def record_blocked(self, mode: str, region: str | None, blocked: Mapping[str, str]) -> None:
        with _RedisErrors():
            self._sessions.record_blocked(mode, region, blocked)

    def claim(self, mode: str, region: str | None, proposals: Sequence[Sequence[Sequence[str]]],
              accept_timeout_s: float, choices: Sequence[str] | None = None) -> list[ClaimResult]:
        with _RedisErrors():
            return self._sessions.claim(mode, region, proposals, accept_timeout_s, choices)

    def claims(self, mode: str, region: str | None, accept_timeout_s: float, width: int) -> ClaimBatches:
        """One queue's claim batches sent while the caller goes on, at most `width` in flight
        (sessions.Claims); close() it when done."""
        return ClaimBatches(self._sessions.claims(mode, region, accept_timeout_s, width))

    def refresh_reads(self) -> int:
        """The TTL refreshes of reads the view cache answered since the last call (one script
        per 1,000 tickets); the tick calls it before processing deadlines."""
        with _RedisErrors():
            return self._tickets.refresh_reads()

    @property
    def view_cache(self) -> ViewCache | None:
        return self._tickets.cache

    def process_deadlines(self, limit: int) -> DeadlineCounts:
        with _RedisErrors():
            return self._sessions.process_deadlines(limit)

    def allocate(self, limit: int) -> tuple[int, int]:
        """(matches allocated, sessions still waiting) for up to `limit` waiting sessions."""
        page = self.allocate_page(limit)
        return page.allocated, page.waiting

    def allocate_page(self, limit: int) -> AllocationPage:
        """Servers for up to `limit` waiting sessions, oldest first across the regions' lines
        (a line whose region has no free server is not read)."""
        with _RedisErrors():
            return self._sessions.allocate(limit)

    def try_lock(self, name: str, ttl_s: float) -> str | None:
        """A short lock (SET NX PX): returns the owner token, or None if someone holds it."""
        token = secrets.token_hex(8)
        with _RedisErrors():
            if self._client.set(keys.lock(name), token, nx=True, px=max(1, int(ttl_s * 1000))):
                return token
        return None

    def unlock(self, name: str, token: str) -> None:
        with _RedisErrors():
            self._scripts.call("unlock", [keys.lock(name), token])

    # --- replicas ---
    def record_replica(self, info: dict, ttl_s: float) -> None:
        with _RedisErrors():
            self._replicas.record(info, ttl_s)

    def remove_replica(self, replica_id: str) -> None:
        with _RedisErrors():
            self._replicas.remove(replica_id)

    def replicas(self) -> list[dict]:
        with _RedisErrors():
            return self._replicas.list()

    # --- status / health ---
    def stats(self) -> dict:
        """Counters and cardinalities only: cost grows with modes and regions, not tickets.

        {"queues": {mode: {queued, oldest_wait_s, matched, assigned, blocked_by, backfills_open}},
         "outcomes": {mode: {outcome: tickets}} (keys.TICKET_OUTCOMES, monotonic, fleet-wide),
         "sessions": {accepting, allocating, assigned}, "servers": {free, busy, stale}}"""
        with _RedisErrors():
            pipe = self._client.pipeline(transaction=False)
            for mode in self._modes:
                pipe.smembers(keys.regions(mode))
            pipe.smembers(keys.ALLOCATING_REGIONS)
            *region_sets, claimed_regions = pipe.execute()
            queues = {mode: sorted(regions) for mode, regions in zip(self._modes, region_sets)}
            # The sessions waiting for a server, in the lines allocate.lua walks.
            lines = {keys.allocating(region) for region in ("", *claimed_regions)}
            pipe = self._client.pipeline(transaction=False)
            pipe.time()
            pipe.hgetall(keys.COUNTS)
            pipe.hgetall(keys.OLDEST)
            pipe.hgetall(keys.OUTCOMES)
            pipe.zcard(keys.ACCEPTING)
            pipe.zcard(keys.ALLOCATING)  # the single line of releases before
            pipe.scard(keys.ASSIGNED)
            pipe.scard(keys.SERVERS_BUSY)
            free_sets = [keys.free_servers(region) for region in (None, *self._regions)]
            for free_set in free_sets:
                pipe.zcard(free_set)
            for mode in self._modes:
                pipe.zcard(keys.open_backfills(mode))
            for mode, regions in queues.items():
                for region in regions:
                    pipe.zcard(keys.queue(mode, region))
                    pipe.hget(keys.why(mode, region), "@counts")
            replies = pipe.execute()
            ((seconds, micros), counts, oldest, outcomes, accepting, allocating, assigned,
             busy) = replies[:8]
            free_all = sum(replies[8:8 + len(free_sets)])
            now_ms = seconds * 1000 + micros // 1000
            healthy_after = now_ms - int(self._servers_config.heartbeat_ttl_s * 1000)
            pipe = self._client.pipeline(transaction=False)
            for free_set in free_sets:
                pipe.zcount(free_set, f"({healthy_after}", "+inf")
            for line in lines:
                pipe.zcard(line)
            found = pipe.execute()
            free = sum(found[:len(free_sets)])
            allocating += sum(found[len(free_sets):])
        open_backfills = dict(zip(self._modes, replies[8 + len(free_sets):8 + len(free_sets) + len(self._modes)]))
        depths = iter(replies[8 + len(free_sets) + len(self._modes):])
        result_queues = {}
        for mode, regions in queues.items():
            queued, oldest_ms, blocked = 0, None, {}
            for region in regions:
                depth = next(depths)
                why = next(depths)
                queued += depth
                if depth and why:
                    for rule, n in json.loads(why).items():
                        blocked[rule] = blocked.get(rule, 0) + int(n)
                seen = oldest.get(keys.queue(mode, region))
                if depth and seen is not None:
                    oldest_ms = int(seen) if oldest_ms is None else min(oldest_ms, int(seen))
            result_queues[mode] = {
                "queued": queued,
                "oldest_wait_s": None if oldest_ms is None else max(0.0, (now_ms - oldest_ms) / 1000),
                "matched": int(counts.get(keys.matched_count(mode), 0)),
                "assigned": int(counts.get(keys.assigned_count(mode), 0)),
                # Tickets each rule kept waiting at the last tick (SPEC "blocked_by").
                "blocked_by": blocked,
                "backfills_open": int(open_backfills.get(mode, 0)),
            }
        return {
            "queues": result_queues,
            # Fleet-wide totals since the data began (every replica reads the same ones).
            "outcomes": {mode: {outcome: int(outcomes.get(keys.outcome_count(mode, outcome), 0))
                                for outcome in keys.TICKET_OUTCOMES}
                         for mode in self._modes},
            "sessions": {"accepting": accepting, "allocating": allocating, "assigned": assigned},
            "servers": {"free": free, "busy": busy, "stale": free_all - free},
        }

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except (redis.exceptions.RedisError, OSError):
            return False


def _access(token: str | None, access: str | None) -> str:
    if access is not None:
        return access
    if token is None:
        raise ValueError("a ticket call needs the ticket's token or an access")
    return token_hash(token)
