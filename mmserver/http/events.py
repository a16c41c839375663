"""GET /v1/events: the event log for game backends (SPEC "Events (v2)").

A backend follows every ticket and match from one cursor instead of polling each ticket. With
`wait`, the request long-polls like a ticket read: it answers as soon as an event matching its
filters exists after the cursor, or after `wait` seconds with none. It waits as a waiter on "*"
(waiters.py), woken by every change this replica hears of, and re-reads the log at least every
RECHECK_S so that an event no ticket change announces (a backfill created, say) is not late by
more than that.
"""
from __future__ import annotations

from typing import Callable, Collection

import falcon

from mmserver.http import longpoll, validation
from mmserver.http.access import Access
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
        if longpoll.resuming(req.env):
            # a parked long-poll handed back after a wake: checked in its first pass
            self._answer(resp, longpoll.resume(req.env))
            return
        self._access.events_reader(self._access.caller(req))
        query = validation.events_request(req.params, self._event_types, self._modes)
        # Each pass of a long-poll reads on from where the last one stopped: the stretch it
        # scanned held nothing the filters let through, so every wake (any change on this
        # replica) scans only what is new, not up to 10,000 old events again.
        cursor = [query.after]

        def read():
            page = self._store.events(cursor[0], limit=query.limit, types=query.types, modes=query.modes)
            cursor[0] = page.next
            return page

        if not query.wait:
            self._answer(resp, longpoll.Answer(read()))
            return
        # Waits as a waiter on "*", re-reading at least every RECHECK_S.
        self._answer(resp, longpoll.start(req.env, self._waiters, ANY_CHANGE, read,
                                          lambda _first: lambda page: bool(page.events),
                                          query.wait, recheck_s=RECHECK_S))

    def _answer(self, resp: falcon.Response, answer: longpoll.Answer) -> None:
        longpoll.respond(resp, answer, self._on_busy_longpoll,
                         lambda page: {"events": page.events, "next": page.next})
