"""A replica-local cache of ticket views, kept fresh by the pub/sub events it already receives.

A client polls its ticket every second or two; its view changes a handful of times in the
ticket's life. Each poll used to be one read script on the one Redis every replica shares; with
this cache a poll of an unchanged ticket costs Redis nothing but its share of a batched TTL
refresh (see ReadRefreshes).

What keeps it correct:
- **Invalidation by events.** Every script that changes a ticket publishes its id on
  `mm:events` (and a change that leaves the version alone, such as a tick's explanation or a
  roster change, on `mm:views`); the subscriber hands both to `invalidate` before it wakes any
  long-poll, so a woken waiter re-reads from Redis. A cached view is therefore stale by at most
  the propagation of one message from Redis to this replica's subscriber.
- **Read your writes.** A change a client makes through this replica (cancel, accept, decline,
  release) drops the ticket's entry as soon as the script returns (`drop`): the client's next
  read here sees its change even before the change's message comes back.
- **No fill can outlive an invalidation it raced.** A read that will fill the cache registers
  first (`begin`); a message for that ticket arriving before the fill lands (`put`) voids it, as
  does any `clear`. A view read before a change is thus never stored after that change's message.
- **Only while the subscriber is connected.** Pub/sub does not buffer: from the moment the
  connection is lost until it is back, messages are gone. `disconnected` empties the cache and
  turns it off; `connected` (after the re-subscription) turns it on, empty.
- **A bounded age.** An entry older than `max_age_s` is not served, whatever happened: a belt
  for the braces above (e.g. a Redis restarted without its data behind the subscriber's back).
- **Bounded memory.** At most `max_entries` views, least recently used dropped first.
- **The caller's access is checked on every read,** as the read script checks it
  (lib/views.lua authorised()): a backend sees any ticket, a player the tickets it is in, a ticket
  token only its own ticket. An entry knows the token's hash only once a read proved it (a
  read with that token, or the creation): until then a token read goes to Redis.

Entries hold the read script's raw reply (the field list lib/views.lua view() returns), so the view
built from a hit is exactly the one a read would build.
"""
from __future__ import annotations

import hmac
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Iterable, Sequence

# Answers of get() besides a reply.
MISS = None
FORBIDDEN = "forbidden"

BACKEND = "@b"
PLAYER_PREFIX = "@p:"


class Fill:
    """A read in flight that may fill the cache; see ViewCache.begin."""

    __slots__ = ("ticket_id", "epoch", "messages")

    def __init__(self, ticket_id: str, epoch: int) -> None:
        self.ticket_id = ticket_id
        self.epoch = epoch
        self.messages = 0  # messages naming the ticket since begin()


class _Entry:
    __slots__ = ("reply", "fields", "token_hash", "players", "stored", "pending_own")

    def __init__(self, reply: Sequence[Any], fields: dict, token_hash: str | None, stored: float,
                 pending_own: int) -> None:
        self.reply = reply
        self.fields = fields
        self.token_hash = token_hash
        party = fields.get("y")
        players = (fields["p"], *party.split(",")) if party else (fields["p"],)
        left = fields.get("lf")  # party members who left its match: no longer its players
        self.players = tuple(p for p in players if p not in left.split(",")) if left else players
        self.stored = stored
        # Messages of this replica's own write still to come, which must not evict the entry
        # (only ever the creation's own publish, see put()).
        self.pending_own = pending_own


def reply_fields(reply: Sequence[Any]) -> dict:
    """['ok', field, value, ...] -> {field: value}."""
    return {reply[i]: reply[i + 1] for i in range(1, len(reply) - 1, 2)}


class ViewCache:
    def __init__(self, max_entries: int, max_age_s: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1 (no cache at all: do not build one)")
        if max_age_s <= 0:
            raise ValueError("max_age_s must be positive")
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._fills: dict[str, list[Fill]] = {}
        self._epoch = 0
        self._live = False  # the subscriber is connected: messages arrive
        self.hits = 0
        self.misses = 0
        self.invalidations = 0

    # --- subscriber side ------------------------------------------------------------------

    def connected(self) -> None:
        """The subscriber is (re)subscribed: from now on every change reaches invalidate()."""
        with self._lock:
            self._reset()
            self._live = True

    def disconnected(self) -> None:
        """The subscriber lost its connection: messages are being lost, serve nothing."""
        with self._lock:
            self._live = False
            self._reset()

    def clear(self) -> None:
        with self._lock:
            self._reset()

    def _reset(self) -> None:
        self._entries.clear()
        self._epoch += 1  # every fill in flight is void

    def invalidate(self, ticket_ids: Iterable[str]) -> None:
        with self._lock:
            entries, fills = self._entries, self._fills
            for ticket_id in ticket_ids:
                entry = entries.get(ticket_id)
                if entry is not None:
                    if entry.pending_own:
                        entry.pending_own -= 1
                    else:
                        del entries[ticket_id]
                        self.invalidations += 1
                for fill in fills.get(ticket_id, ()):
                    fill.messages += 1

    def drop(self, ticket_id: str) -> None:
        """This replica has just changed the ticket (a cancel, an accept, ...): from now on its
        reads here must see the change, not wait for the change's message to come back through
        the subscriber (a client answered "cancelled" must not then read "queued"). A fill in
        flight is void as if that message had come; the message still comes, and evicts
        whatever was stored meanwhile (one more miss)."""
        with self._lock:
            if self._entries.pop(ticket_id, None) is not None:
                self.invalidations += 1
            for fill in self._fills.get(ticket_id, ()):
                fill.messages += 1

    def on_message(self, data: str | bytes) -> None:
        """A message of `mm:events` or `mm:views`: ticket ids, comma separated."""
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        self.invalidate(part for part in data.split(",") if part)

    # --- request side ---------------------------------------------------------------------

    def get(self, ticket_id: str, access: str) -> Any:
        """The cached reply, FORBIDDEN when the entry proves the caller has no access, or MISS."""
        with self._lock:
            entry = self._entries.get(ticket_id)
            if entry is None or not self._live:
                self.misses += 1
                return MISS
            if self._clock() - entry.stored > self.max_age_s:
                del self._entries[ticket_id]
                self.misses += 1
                return MISS
            allowed = _allowed(entry, access)
            if allowed is None:  # a token this entry cannot check: ask Redis
                self.misses += 1
                return MISS
            self._entries.move_to_end(ticket_id)
            self.hits += 1
        return entry.reply if allowed else FORBIDDEN

    def fields(self, ticket_id: str) -> dict | None:
        """The cached reply's fields (for the TTL refresh of a hit), or None."""
        with self._lock:
            entry = self._entries.get(ticket_id)
            return None if entry is None else entry.fields

    def begin(self, ticket_id: str) -> Fill:
        """Call before the Redis read whose reply may fill the cache; then put() or end()."""
        with self._lock:
            fill = Fill(ticket_id, self._epoch)
            self._fills.setdefault(ticket_id, []).append(fill)
            return fill

    def end(self, fill: Fill) -> None:
        """The read failed or answered no view: forget the fill."""
        with self._lock:
            self._forget(fill)

    def put(self, fill: Fill, reply: Sequence[Any], access: str | None, *, own_messages: int = 0) -> None:
        """Store a read's reply (['ok', field, value, ...]) unless a message or a clear came
        since begin(). `access`: what the read was authorised with (a token hash proves the
        token). `own_messages`: how many messages naming this ticket the write that answered
        `reply` published itself (the creation: 1); they must not evict the entry."""
        with self._lock:
            self._forget(fill)
            if not self._live or fill.epoch != self._epoch:
                return
            seen = fill.messages
            if seen > own_messages:
                return  # a change came after the reply, or may have: do not store it
            fields = reply_fields(reply)
            token_hash = access if access and access != BACKEND and not access.startswith(PLAYER_PREFIX) else None
            before = self._entries.get(fill.ticket_id)
            if token_hash is None and before is not None:
                token_hash = before.token_hash  # a ticket's token never changes
            self._entries[fill.ticket_id] = _Entry(reply, fields, token_hash, self._clock(),
                                                   own_messages - seen)
            self._entries.move_to_end(fill.ticket_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def _forget(self, fill: Fill) -> None:
        fills = self._fills.get(fill.ticket_id)
        if fills is None:
            return
        try:
            fills.remove(fill)
        except ValueError:
            return
        if not fills:
            del self._fills[fill.ticket_id]

    # --- status ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def live(self) -> bool:
        return self._live

    def status(self) -> dict:
        return {"live": self._live, "entries": len(self._entries), "max_entries": self.max_entries,
                "max_age_s": self.max_age_s, "hits": self.hits, "misses": self.misses,
                "invalidations": self.invalidations}


def _allowed(entry: _Entry, access: str) -> bool | None:
    """As lib/views.lua authorised(): True, False (forbidden), or None (unknown token: ask Redis)."""
    if access == BACKEND:
        return True
    if access.startswith(PLAYER_PREFIX):
        return access[len(PLAYER_PREFIX):] in entry.players
    if entry.token_hash is None:
        return None
    return hmac.compare_digest(entry.token_hash, access)
