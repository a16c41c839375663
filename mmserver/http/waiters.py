"""Long-poll waiters: request threads sleeping until their ticket changes.

Every store script that changes tickets publishes the changed ids on `mm:events`; the subscriber
thread hands each payload to `on_event`, which wakes the waiters of those ids on this replica.
A waiter is registered *before* the request reads its ticket, so an event published between
that read and the wait is not lost: it sets the waiter's event, and the wait returns at once.

The number of waiters is capped (`max_waiting`): each one holds a waitress worker thread, and
the other requests need some. Beyond the cap, and after `close()`, a long-poll answers at once
with the ticket's current state.
"""
from __future__ import annotations

import logging
import threading
from typing import Iterable

logger = logging.getLogger(__name__)

# The key of waiters woken by every change (GET /v1/events): no ticket id looks like it.
ANY_CHANGE = "*"


class Waiter:
    """One long-poll on one ticket. Woken by events for that ticket, by wake_all and close."""

    __slots__ = ("ticket_id", "_event", "_owner")

    def __init__(self, ticket_id: str, owner: "Waiters") -> None:
        self.ticket_id = ticket_id
        self._event = threading.Event()
        self._owner = owner

    def wake(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds; True if woken. Re-arms itself for the next wait.

        A wake that arrives while the caller re-reads its ticket stays recorded (the event is
        cleared only here, before that re-read), so the next wait returns at once.
        """
        woken = self._event.wait(max(0.0, timeout))
        if woken and not self._owner.closed:
            # After close() the event stays set: every later wait returns at once.
            self._event.clear()
        return woken

    @property
    def closed(self) -> bool:
        return self._owner.closed


class Waiters:
    def __init__(self, max_waiting: int) -> None:
        if max_waiting < 0:
            raise ValueError("max_waiting must be >= 0")
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._by_ticket: dict[str, set[Waiter]] = {}
        self._waiting = 0
        self._closed = False

    # --- request side ---

    def register(self, ticket_id: str) -> Waiter | None:
        """A waiter for `ticket_id`, or None when the cap is reached or the registry is closed.

        Call `unregister` when done (try/finally)."""
        with self._lock:
            if self._closed or self._waiting >= self.max_waiting:
                return None
            waiter = Waiter(ticket_id, self)
            self._by_ticket.setdefault(ticket_id, set()).add(waiter)
            self._waiting += 1
            return waiter

    def unregister(self, waiter: Waiter) -> None:
        with self._lock:
            waiters = self._by_ticket.get(waiter.ticket_id)
            if waiters is None or waiter not in waiters:
                return
            waiters.discard(waiter)
            if not waiters:
                del self._by_ticket[waiter.ticket_id]
            self._waiting -= 1

    def wait(self, ticket_id: str, timeout: float) -> bool | None:
        """Wait for an event on `ticket_id`: True if woken, False on timeout, None if the cap is
        reached or the registry is closed (do not wait: answer at once).

        Only events arriving after this call wake it; the long-poll resource uses
        register/Waiter.wait/unregister instead so that it misses none."""
        waiter = self.register(ticket_id)
        if waiter is None:
            return None
        try:
            return waiter.wait(timeout)
        finally:
            self.unregister(waiter)

    # --- subscriber side ---

    def notify(self, ticket_ids: Iterable[str]) -> None:
        with self._lock:
            for ticket_id in ticket_ids:
                for waiter in self._by_ticket.get(ticket_id, ()):
                    waiter.wake()

    def on_event(self, channel: str, data: str | bytes) -> None:
        """A message of `mm:events`: the changed ticket ids, comma separated."""
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        ids = [part.strip() for part in data.split(",")]
        self.notify([*(ticket_id for ticket_id in ids if ticket_id), ANY_CHANGE])

    def wake_all(self) -> None:
        """Pub/sub drops messages while disconnected: after a reconnect every waiter re-reads."""
        with self._lock:
            for waiters in self._by_ticket.values():
                for waiter in waiters:
                    waiter.wake()

    def close(self) -> None:
        """The drain: wake every waiter now; later waits answer at once."""
        with self._lock:
            self._closed = True
            waiting = self._waiting
            for waiters in self._by_ticket.values():
                for waiter in waiters:
                    waiter.wake()
        if waiting:
            logger.info("woke %d long-poll(s) for the drain", waiting)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def waiting(self) -> int:
        return self._waiting
