"""Ticket resources: create, read (long-poll), cancel, accept, decline.

Thin: find out who calls (access.py), validate, call one store method, answer its view. The
store's scripts check the caller's access to the ticket (Forbidden) and its state (Conflict);
errors.py turns those into statuses.
"""
from __future__ import annotations

import logging
from typing import Callable, Mapping, Sequence

import falcon

from mmserver.config import ModeConfig
from mmserver.http import longpoll, validation
from mmserver.http.access import Access
from mmserver.http.errors import ApiError, unavailable
from mmserver.http.waiters import Waiters
from mmserver.readiness import Readiness
from mmserver.store import Store

logger = logging.getLogger(__name__)


def check_ticket_id(ticket_id: str) -> None:
    # A shape the store never generates cannot name a ticket: skip the round trip.
    if not validation.is_generated_id(ticket_id):
        raise ApiError(404, "Ticket not found", "No ticket has this id.")


class TicketCollection:
    """POST /v1/tickets"""

    def __init__(self, store: Store, modes: Mapping[str, ModeConfig], readiness: Readiness,
                 access: Access, regions: Sequence[str] = ()) -> None:
        self._store = store
        self._modes = modes
        self._readiness = readiness
        self._access = access
        self._regions = tuple(regions)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._readiness.draining:
            raise unavailable("This replica is draining and takes no new tickets; retry shortly.")
        caller = self._access.caller(req)
        body = self._access.creation(caller, validation.read_json(req))
        ticket = validation.ticket_request(body, self._modes, self._regions)
        self._access.limits.create(caller)
        view, token = self._store.create_ticket(
            player_id=ticket.player_id, mode=ticket.mode, mmr=ticket.mmr,
            region=ticket.region, party=ticket.party, idempotency_key=ticket.idempotency_key,
            attributes=ticket.attributes, latencies=ticket.latencies, roles=ticket.roles,
        )
        resp.status = falcon.HTTP_201
        resp.location = f"/v1/tickets/{view['ticket_id']}"
        resp.media = {**view, "token": token}


class TicketResource:
    """GET/DELETE /v1/tickets/{ticket_id}, POST .../accept and .../decline."""

    def __init__(self, store: Store, waiters: Waiters, readiness: Readiness, access: Access, *,
                 on_busy_longpoll: Callable[[], None] = lambda: None) -> None:
        self._store = store
        self._waiters = waiters
        self._readiness = readiness
        self._access = access
        self._on_busy_longpoll = on_busy_longpoll

    def _ticket_access(self, req: falcon.Request, ticket_id: str) -> str:
        check_ticket_id(ticket_id)
        return self._access.ticket_access(self._access.caller(req))

    def on_get(self, req: falcon.Request, resp: falcon.Response, ticket_id: str) -> None:
        if longpoll.resuming(req.env):
            # a parked long-poll handed back after a wake: checked and counted in its first pass
            self._answer(resp, longpoll.resume(req.env))
            return
        access = self._ticket_access(req, ticket_id)
        poll = validation.poll_request(req.params)
        self._access.limits.poll(self._access.caller(req))
        if not poll.wait:
            resp.media = self._store.read_ticket(ticket_id, access=access)
            return
        # Answer as soon as the ticket's version exceeds `version` (or the version it has
        # now), else after `wait` seconds with the unchanged state. An operator's drain does
        # not end long-polls (clients would re-poll in a tight loop); the stop sequence does,
        # by closing the waiters.
        version = poll.version

        def until(first: dict) -> Callable[[dict], bool]:
            target = first["version"] if version is None else version
            return lambda view: view["version"] > target

        self._answer(resp, longpoll.start(
            req.env, self._waiters, ticket_id,
            lambda: self._store.read_ticket(ticket_id, access=access), until, poll.wait))

    def _answer(self, resp: falcon.Response, answer: longpoll.Answer) -> None:
        longpoll.respond(resp, answer, self._on_busy_longpoll)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, ticket_id: str) -> None:
        resp.media = self._store.cancel_ticket(ticket_id, access=self._ticket_access(req, ticket_id))

    def on_post_accept(self, req: falcon.Request, resp: falcon.Response, ticket_id: str) -> None:
        resp.media = self._store.accept(ticket_id, access=self._ticket_access(req, ticket_id))

    def on_post_decline(self, req: falcon.Request, resp: falcon.Response, ticket_id: str) -> None:
        resp.media = self._store.decline(ticket_id, access=self._ticket_access(req, ticket_id))
