"""Long-poll waiters: long-polls sleeping until their ticket changes.

Every store script that changes tickets publishes the changed ids on `mm:events`; the subscriber
thread hands each payload to `on_event`, which wakes the waiters of those ids on this replica.
A waiter is registered *before* the request reads its ticket, so an event published between
that read and the wait is not lost: it is recorded on the waiter, and the wait (or the park)
that follows returns at once.

A waiter waits in one of two ways:
- `wait(timeout)` blocks the calling thread (a request served without the HTTP server's
  parking, e.g. by Falcon's test client);
- `park(resume, timeout)` blocks nothing: it records `resume` and returns. `resume` is called
  once, from the thread that wakes the waiter (the subscriber, close, wake_all) or from the
  `Alarms` thread at the timeout. The HTTP server parks a long-poll this way, so a waiting
  client costs its connection and a few objects, not a worker thread (see longpoll.py).

The number of waiters is capped (`max_waiting`): it bounds memory and the burst of re-reads a
wake_all causes. Beyond the cap, and after `close()`, a long-poll answers at once with the
ticket's current state.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Callable, Iterable

logger = logging.getLogger(__name__)

# The key of waiters woken by every change (GET /v1/events): no ticket id looks like it.
ANY_CHANGE = "*"


class Waiter:
    """One long-poll on one ticket. Woken by events for that ticket, by wake_all and close.

    `_woken` records a wake nobody was waiting for yet (it came between registration and the
    wait, or while the request re-read its ticket): the next wait or park returns at once. A
    wake that resumes a parked request is consumed by it: that request re-reads next."""

    __slots__ = ("ticket_id", "_owner", "_lock", "_woken", "_event", "_resume", "_generation")

    def __init__(self, ticket_id: str, owner: "Waiters") -> None:
        self.ticket_id = ticket_id
        self._owner = owner
        self._lock = threading.Lock()
        self._woken = False
        self._event: threading.Event | None = None  # while a thread sleeps in wait()
        self._resume: Callable[[], None] | None = None  # while parked
        self._generation = 0  # which park an alarm belongs to

    def wake(self) -> None:
        with self._lock:
            resume, self._resume = self._resume, None
            if resume is None:
                self._woken = True
            event = self._event
        if event is not None:
            event.set()
        if resume is not None:
            resume()

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds; True if woken. A wake recorded before the call (or
        any time after close()) returns at once."""
        with self._lock:
            if self._woken or self.closed:
                self._woken = False
                return True
            event = self._event = threading.Event()
        woken = event.wait(max(0.0, timeout))
        with self._lock:
            self._event = None
            # consumed: the caller re-reads its ticket now; a later wake is recorded anew
            self._woken = False
        return woken

    def park(self, resume: Callable[[], None], timeout: float) -> bool:
        """Arrange for `resume()` to be called once: at the next wake, or after `timeout`
        seconds. False (and `resume` is never called) if a wake was recorded already or the
        registry is closed: the caller re-reads at once instead."""
        with self._lock:
            if self._woken or self.closed:
                self._woken = False
                return False
            self._resume = resume
            self._generation += 1
            generation = self._generation
        self._owner.alarms.schedule(max(0.0, timeout), self, generation)
        return True

    def expire(self, generation: int) -> None:
        """The alarm of park number `generation`: resume that park if it is still parked."""
        with self._lock:
            if self._generation != generation or self._resume is None:
                return  # woken before its timeout
            resume, self._resume = self._resume, None
        resume()

    @property
    def parked(self) -> bool:
        return self._resume is not None

    @property
    def closed(self) -> bool:
        return self._owner.closed


class Alarms:
    """One thread ("longpoll-alarms") that resumes parked waiters at their timeout.

    A heap of (when, seq, waiter, generation); an entry whose park was woken earlier is dropped
    when it comes due, so entries are bounded by the waiters and their longest wait. The thread
    starts with the first alarm and ends at `close()`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Waiter, int]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._closed = False

    def schedule(self, delay: float, waiter: Waiter, generation: int) -> None:
        with self._cv:
            if self._closed:
                # close() comes after the registry woke every waiter: nothing is left to expire
                return
            entry = (self._clock() + delay, next(self._seq), waiter, generation)
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:
                self._cv.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="longpoll-alarms", daemon=True)
                self._thread.start()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._heap.clear()
            self._cv.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)

    def __len__(self) -> int:
        return len(self._heap)

    def _run(self) -> None:
        while True:
            due: list[tuple[Waiter, int]] = []
            with self._cv:
                while not self._closed:
                    now = self._clock()
                    while self._heap and self._heap[0][0] <= now:
                        _when, _seq, waiter, generation = heapq.heappop(self._heap)
                        due.append((waiter, generation))
                    if due:
                        break
                    self._cv.wait(self._heap[0][0] - now if self._heap else None)
                if self._closed:
                    return
            for waiter, generation in due:
                try:
                    waiter.expire(generation)
                except Exception:  # one failing resume must not stop every later timeout
                    logger.exception("resuming an expired long-poll failed")


class Waiters:
    def __init__(self, max_waiting: int) -> None:
        if max_waiting < 0:
            raise ValueError("max_waiting must be >= 0")
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._by_ticket: dict[str, set[Waiter]] = {}
        self._waiting = 0
        self._closed = False
        self.alarms = Alarms()

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

        Only events arriving after this call wake it; the long-poll resources use
        register/Waiter.wait or park/unregister instead so that they miss none."""
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
            woken = [waiter for ticket_id in ticket_ids for waiter in self._by_ticket.get(ticket_id, ())]
        # Outside the lock: waking a parked waiter hands its request to a worker.
        for waiter in woken:
            waiter.wake()

    def on_event(self, channel: str, data: str | bytes) -> None:
        """A message of `mm:events`: the changed ticket ids, comma separated."""
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        ids = [part.strip() for part in data.split(",")]
        self.notify([*(ticket_id for ticket_id in ids if ticket_id), ANY_CHANGE])

    def wake_all(self) -> None:
        """Pub/sub drops messages while disconnected: after a reconnect every waiter re-reads."""
        for waiter in self._everyone():
            waiter.wake()

    def close(self) -> None:
        """The drain: wake every waiter now; later waits and parks answer at once."""
        with self._lock:
            self._closed = True
            waiting = self._waiting
        for waiter in self._everyone():
            waiter.wake()
        # every waiter is woken and none parks again: no timeout is left to watch
        self.alarms.close()
        if waiting:
            logger.info("woke %d long-poll(s) for the drain", waiting)

    def _everyone(self) -> list[Waiter]:
        with self._lock:
            return [waiter for waiters in self._by_ticket.values() for waiter in waiters]

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def waiting(self) -> int:
        return self._waiting
