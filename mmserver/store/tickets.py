"""Ticket operations: each one Lua script, one round trip."""
from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from typing import Any, Mapping, Sequence

from mmserver.config import ModeConfig
from mmserver.matchmaking.rules import MatchRules, limits_in_force
from mmserver.store import profiles
from mmserver.store.errors import Conflict, Forbidden, NotFound, PlayerBusy, StoreError
from mmserver.store.scripts import Scripts
from mmserver.store.viewcache import FORBIDDEN, ViewCache
from mmserver.store.views import mmr_text, ticket_view


_SEPARATORS = (",", ";", "|")


def new_id() -> str:
    """URL-safe, 16 characters from 12 random bytes (96 bits): unguessable enough for an id,
    short enough to keep every key and queue member small. Tokens protect the tickets."""
    return _no_leading_dash(secrets.token_urlsafe(12))


def new_ids(count: int) -> list[str]:
    """`count` ids like new_id(), from one read of the random source (a tick makes thousands)."""
    raw = base64.urlsafe_b64encode(secrets.token_bytes(12 * count)).decode("ascii")
    return [_no_leading_dash(raw[i:i + 16]) for i in range(0, 16 * count, 16)]


def _no_leading_dash(raw_id: str) -> str:
    """An id an operator can pass to a command line: one that starts with '-' reads as an option
    to argparse (`mmadmin match -c-d3X...`) and to most shells' tools. One leading value of 64
    is folded into '_' (96 bits of randomness less 0.02)."""
    return "_" + raw_id[1:] if raw_id.startswith("-") else raw_id


def new_id_and_token() -> tuple[str, str]:
    """A ticket's id (as new_id()) and its token (24 random bytes, 32 URL-safe characters)
    from one read of the random source: each read is a system call that lets go of the
    interpreter lock, and under concurrent creations every such hand-over costs a thread
    switch (docs/PERFORMANCE.md, "Where the server's CPU goes"). 12 and 24 bytes encode to
    whole base64 groups, so the two parts are exactly the encodings of their own bytes."""
    raw = base64.urlsafe_b64encode(secrets.token_bytes(36)).decode("ascii")
    return _no_leading_dash(raw[:16]), raw[16:]


# Access for the scripts (lib/views.lua authorised()): a ticket token's hash, or one of these.
BACKEND_ACCESS = "@b"


def player_access(player_id: str) -> str:
    return "@p:" + player_id


def idempotency_slot(player_id: str, key: str) -> tuple[str, bytes]:
    """The Redis key of a create's idempotency key, and the mask that seals its token there.

    Both come from the player and the client's key through different digests: Redis holds
    neither the key nor the token, so reading Redis does not give a ticket's token away.
    """
    material = f"{player_id}\0{key}".encode("utf-8", "surrogatepass")
    name = hashlib.sha256(b"mmserver idempotency key\0" + material).hexdigest()[:32]
    mask = hashlib.sha256(b"mmserver idempotency seal\0" + material).digest()
    return f"mm:ik:{name}", mask


def seal(token: str, mask: bytes) -> str:
    raw = token.encode("ascii")
    return bytes(a ^ b for a, b in zip(raw, mask)).hex()


def unseal(sealed: str, mask: bytes) -> str:
    return bytes(a ^ b for a, b in zip(bytes.fromhex(sealed), mask)).decode("ascii")


def token_hash(token: str) -> str:
    """What is stored instead of the token: 96 bits of its SHA-256 (16 characters). The
    script compares hashes, so timing reveals nothing usable about the token itself."""
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()[:12]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_reply(reply: Any) -> Any:
    """Raise the error a script answered with, else return the reply."""
    if isinstance(reply, list) and reply:
        head = reply[0]
        if head == "notfound":
            raise NotFound("No such ticket (unknown, or finished long ago).")
        if head == "forbidden":
            raise Forbidden("The token does not match this ticket.")
        if head == "conflict":
            raise Conflict(f"Not allowed now: {reply[1]}.")
        if head == "busy":
            raise PlayerBusy(reply[1], reply[2])
    return reply


# Tickets per refresh script call (a tick's refreshes go in several calls beyond this).
REFRESH_BATCH = 1000
# Reads answered from the cache whose TTL refresh waits for the next tick, at most; beyond,
# a read goes to Redis (whose read script refreshes the TTL itself).
MAX_PENDING_REFRESHES = 200_000


class ReadRefreshes:
    """The TTL refreshes owed for reads answered from the view cache, sent once per tick.

    A read script refreshes its ticket's TTL deadline (the queue member's score while queued,
    the `d` field while matched). A read answered from the cache records the ticket here
    instead, and the tick sends every recorded ticket's refresh in one script call per
    REFRESH_BATCH (refresh.lua) before it processes deadlines. The price: a ticket's deadline
    is counted from the tick after its last read instead of the read itself, so a ticket whose
    client stopped polling expires between TTL and TTL + one tick period after its last read,
    and a client keeps its ticket alive by polling at least once every TTL minus one tick
    period (see docs/REDIS.md, "The view cache")."""

    def __init__(self, max_pending: int = MAX_PENDING_REFRESHES) -> None:
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._queued: dict[str, tuple[str, str, str]] = {}  # id -> (mode, region, member)
        self._matched: set[str] = set()

    def record(self, ticket_id: str, fields: Mapping[str, str]) -> bool:
        """Owe the refresh of a read answered from the cache; False when too many are owed
        (the caller reads from Redis instead)."""
        status = fields["s"]
        if status not in ("queued", "matched"):
            return True  # a read refreshes nothing else
        with self._lock:
            if len(self._queued) + len(self._matched) >= self._max_pending:
                return False
            if status == "queued":
                # The member as lib/codec.lua member() builds it, from the very strings it holds.
                member = f"{ticket_id}|{fields['r']}|{fields['n']}|{fields['e']}"
                if fields.get("a"):
                    member += "|" + fields["a"]
                self._queued[ticket_id] = (fields["m"], fields.get("g", ""), member)
            else:
                self._matched.add(ticket_id)
        return True

    def take(self) -> tuple[dict[str, tuple[str, str, str]], set[str]]:
        with self._lock:
            queued, matched = self._queued, self._matched
            self._queued, self._matched = {}, set()
        return queued, matched

    def give_back(self, queued: Mapping[str, tuple[str, str, str]], matched: set[str]) -> None:
        """A flush failed (Redis away): owe them again, for the next tick."""
        with self._lock:
            for ticket_id, entry in queued.items():
                self._queued.setdefault(ticket_id, entry)
            self._matched |= matched

    @property
    def pending(self) -> int:
        return len(self._queued) + len(self._matched)


class Tickets:
    def __init__(self, scripts: Scripts, modes: Mapping[str, ModeConfig], *,
                 retention_s: int, allocation_timeout_ms: int, regions: Sequence[str] = (),
                 cache: ViewCache | None = None) -> None:
        self._scripts = scripts
        self._cache = cache
        self._refreshes = ReadRefreshes()
        self._modes = modes
        self._rules = {name: MatchRules.from_mode(mode, regions) for name, mode in modes.items()}
        self._retention_s = retention_s
        self._allocation_timeout_ms = allocation_timeout_ms

    def create(self, *, player_id: str, mode: str, mmr: float, region: str | None,
               party: Sequence[str], idempotency_key: str | None = None,
               attributes: Mapping[str, Any] | None = None, latencies: Mapping[str, float] | None = None,
               roles: Sequence[Sequence[str]] = ()) -> tuple[dict, str]:
        config = self._modes.get(mode)
        if config is None:
            raise Conflict(f"Unknown mode {mode!r}.")
        party = list(party)
        problem = config.party_problem(player_id, party)
        if problem:  # the HTTP layer refused it already (422); other callers get the same words
            raise Conflict(problem)
        # The HTTP layer's validation already excludes these; the scripts use them as separators.
        if any(c in value for value in (player_id, region or "", mode, *party) for c in _SEPARATORS) \
                or not player_id or "" in party:
            raise Conflict("Player ids, regions and modes must not contain ',', ';' or '|'.")
        profile = ""
        if config.has_profiles:
            # A mode that picks regions by latency has one queue; a fixed region is then a
            # constraint the matcher reads from the profile.
            fixed = region if config.latency is not None else None
            if config.latency is not None:
                region = None
            profile = profiles.encode(attributes=attributes or {}, latencies=latencies or {}, roles=roles,
                                      region=fixed,
                                      # Player ids: what match functions see, and how
                                      # the roles the matcher gives (per player) are named.
                                      players=[player_id, *party]
                                      if config.match_function or config.roles else ())
        first_id, token = new_id_and_token()
        idem_key, sealed, mask = "", "", b""
        if idempotency_key is not None:
            idem_key, mask = idempotency_slot(player_id, idempotency_key)
            sealed = seal(token, mask)
        hashed = token_hash(token)
        cache = self._cache
        for attempt in range(3):
            ticket_id = first_id if attempt == 0 else new_id()
            fill = cache.begin(ticket_id) if cache is not None else None
            reply = None
            try:
                reply = self._scripts.call("create", [
                    ticket_id, hashed, mode, region or "", player_id, ",".join(party),
                    mmr_text(mmr), 1 + len(party), int(config.ticket_ttl_s * 1000), idem_key, sealed,
                    profile,
                ])
            finally:
                if fill is not None and (reply is None or reply[0] != "ok"):
                    cache.end(fill)
            if reply[0] == "again":  # the same idempotency key: the same ticket and token
                return self.with_matching(ticket_view(reply[2:])), unseal(reply[1], mask)
            if reply[0] == "ok" and fill is not None:
                # The creation's view is the freshest there is; its own publish (exactly one,
                # create.lua) is yet to arrive and must not evict it.
                cache.put(fill, reply, hashed, own_messages=1)
            if reply[0] != "exists":  # a 96-bit id collision: practically never
                return self.with_matching(ticket_view(check_reply(reply))), token
        raise StoreError("Could not allocate a ticket id.")

    def with_matching(self, view: dict) -> dict:
        """A queued ticket's `matching`: the limits in force for it now, its wait, and what
        kept it from a match at the last tick (None until a tick has looked at it)."""
        matching = view.get("matching")
        rules = self._rules.get(view["mode"])
        if matching is None or rules is None:
            return view
        waited = max(0.0, time.time() - view["enqueued_at"])
        matching["waited_s"] = round(waited, 3)
        matching["limits"] = limits_in_force(rules, waited)
        return view

    # `access`: token_hash(ticket token), BACKEND_ACCESS or player_access(player_id).
    def read(self, ticket_id: str, access: str) -> dict:
        cache = self._cache
        if cache is None:
            return self.with_matching(ticket_view(check_reply(self._scripts.call("read", [ticket_id, access]))))
        reply = cache.get(ticket_id, access)
        if reply is FORBIDDEN:
            raise Forbidden("The token does not match this ticket.")
        if reply is not None:
            fields = cache.fields(ticket_id)
            if fields is not None and self._refreshes.record(ticket_id, fields):
                return self.with_matching(ticket_view(reply))
        fill = cache.begin(ticket_id)
        reply = None
        try:
            reply = self._scripts.call("read", [ticket_id, access])
        finally:
            if reply is not None and reply[0] == "ok":
                cache.put(fill, reply, access)
            else:
                cache.end(fill)
        return self.with_matching(ticket_view(check_reply(reply)))

    def refresh_reads(self) -> int:
        """Send the TTL refreshes owed for reads answered from the cache (ReadRefreshes);
        returns how many tickets. Called by every replica's tick, before its deadlines."""
        queued, matched = self._refreshes.take()
        if not queued and not matched:
            return 0
        items, ids = list(queued.items()), list(matched)
        sent = 0
        try:
            while sent < len(items):
                batch = items[sent:sent + REFRESH_BATCH]
                args: list[Any] = [len(batch)]
                for _ticket_id, (mode, region, member) in batch:
                    args += (mode, region, member)
                self._scripts.call("refresh", args)
                sent += len(batch)
            for start in range(0, len(ids), REFRESH_BATCH):
                self._scripts.call("refresh", [0, *ids[start:start + REFRESH_BATCH]])
        except Exception:
            self._refreshes.give_back(dict(items[sent:]), matched)
            raise
        return len(items) + len(ids)

    @property
    def cache(self) -> ViewCache | None:
        return self._cache

    def cancel(self, ticket_id: str, access: str) -> dict:
        return ticket_view(check_reply(self._change(ticket_id, "cancel", [ticket_id, access, self._retention_s])))

    def accept(self, ticket_id: str, access: str) -> dict:
        return ticket_view(check_reply(self._change(ticket_id, "accept", [ticket_id, access, self._allocation_timeout_ms])))

    def decline(self, ticket_id: str, access: str) -> dict:
        return ticket_view(check_reply(self._change(ticket_id, "decline", [ticket_id, access, self._retention_s])))

    def _change(self, ticket_id: str, script: str, args: list) -> Any:
        """Run a script that may change the ticket; this replica's cache forgets its view even
        when the call failed (it may have run), so the caller reads its own change."""
        try:
            return self._scripts.call(script, args)
        finally:
            if self._cache is not None:
                self._cache.drop(ticket_id)

    def player(self, player_id: str) -> dict:
        reply = self._scripts.call("player", [player_id])
        if reply[0] == "notfound":
            raise NotFound(f"Player {player_id!r} holds no live ticket.")
        return {"player_id": player_id, "ticket": self.with_matching(ticket_view(reply))}

    def release(self, player_id: str) -> dict:
        reply = self._scripts.call("release", [player_id, self._retention_s])
        if reply[0] == "notfound":
            raise NotFound(f"Player {player_id!r} holds no live ticket.")
        view = ticket_view(reply)
        if self._cache is not None:
            self._cache.drop(view["ticket_id"])  # as _change(): read your writes
        return {"player_id": player_id, "released": True, "ticket": view}
