"""GET /v1/events: the event log for game backends (SPEC "Events (v2)").

A backend follows every ticket and match from one cursor instead of polling each ticket. With
`wait`, the request long-polls like a ticket read: it answers as soon as an event matching its
filters exists after the cursor, or after `wait` seconds with none. It waits as a waiter on "*"
(waiters.py), woken by every change this replica hears of, and re-reads the log at least every
RECHECK_S so that an event no ticket change announces (a backfill created, say) is not late by
more than that.
"""
from __future__ import annotations

import time
from typing import Callable, Collection

import falcon

from mmserver.http import validation
from mmserver.http.access import Access
from mmserver.http.tickets import BUSY_RETRY_AFTER_S
from mmserver.http.waiters import ANY_CHANGE, Waiters
from mmserver.store import Store

RECHECK_S = 1.0


class EventsResource:
    """GET /v1/events (backend keys only)."""

    def __init__(self, store: Store, waiters: Waiters, access: Access, event_types: Collection[str],
                 modes: Collection[str], *, on_busy_longpoll: Callable[[], None] = lambda: None) -> None:
        self._store = store
        self._waiters = waiters
        self._access = access
        self._event_types = tuple(event_types)
        self._modes = tuple(modes)
        self._on_busy_longpoll = on_busy_longpoll

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._access.events_reader(self._access.caller(req))
        query = validation.events_request(req.params, self._event_types, self._modes)
        read = lambda: self._store.events(query.after, limit=query.limit, types=query.types,  # noqa: E731
                                          modes=query.modes)
        if not query.wait:
            page = read()
        else:
            page = self._long_poll(resp, read, query.wait)
        resp.media = {"events": page.events, "next": page.next}

    def _long_poll(self, resp: falcon.Response, read, wait_s: float):
        deadline = time.monotonic() + wait_s
        # Registered before the first read, so a change between that read and the wait counts.
        waiter = self._waiters.register(ANY_CHANGE)
        try:
            page = read()
            if waiter is None:
                if not self._waiters.closed:
                    resp.set_header("Retry-After", str(BUSY_RETRY_AFTER_S))
                    self._on_busy_longpoll()
                return page
            while not page.events:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or waiter.closed:
                    break
                waiter.wait(min(remaining, RECHECK_S))
                page = read()
            return page
        finally:
            if waiter is not None:
                self._waiters.unregister(waiter)
