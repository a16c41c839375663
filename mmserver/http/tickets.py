"""Ticket resources: create, read (long-poll), cancel, accept, decline.

Thin: validate, call one store method, answer its view. The store checks tokens (Forbidden)
and states (Conflict); errors.py turns those into statuses.
"""
from __future__ import annotations

import logging
import time
from typing import Mapping

import falcon

from mmserver.config import ModeConfig
from mmserver.http import validation
from mmserver.http.errors import ApiError, unavailable
from mmserver.http.waiters import Waiters
from mmserver.readiness import Readiness
from mmserver.store import Store

logger = logging.getLogger(__name__)


def ticket_token(req: falcon.Request) -> str:
    token = validation.bearer_token(req)
    if token is None:
        raise falcon.HTTPUnauthorized(
            title="Token required",
            description="Send the ticket's token as Authorization: Bearer <token>.",
            challenges=["Bearer"],
        )
    return token


def check_ticket_id(ticket_id: str) -> None:
    # A shape the store never generates cannot name a ticket: skip the round trip.
    if not validation.is_generated_id(ticket_id):
        raise ApiError(404, "Ticket not found", "No ticket has this id.")


class TicketCollection:
    """POST /v1/tickets"""

    def __init__(self, store: Store, modes: Mapping[str, ModeConfig], readiness: Readiness) -> None:
        self._store = store
        self._modes = modes
        self._readiness = readiness

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._readiness.draining:
            raise unavailable("This replica is draining and takes no new tickets; retry shortly.")
        ticket = validation.ticket_request(validation.read_json(req), self._modes)
        view, token = self._store.create_ticket(
            player_id=ticket.player_id, mode=ticket.mode, mmr=ticket.mmr,
            region=ticket.region, party=ticket.party,
        )
        resp.status = falcon.HTTP_201
        resp.location = f"/v1/tickets/{view['ticket_id']}"
        resp.media = {**view, "token": token}


class TicketResource:
    """GET/DELETE /v1/tickets/{ticket_id}, POST .../accept and .../decline."""

    def __init__(self, store: Store, waiters: Waiters, readiness: Readiness) -> None:
        self._store = store
        self._waiters = waiters
        self._readiness = readiness

    def on_get(self, req: falcon.Request, resp: falcon.Response, ticket_id: str) -> None:
        check_ticket_id(ticket_id)
        token = ticket_token(req)
        poll = validation.poll_request(req.params)
        if not poll.wait:
            resp.media = self._store.read_ticket(ticket_id, token)
            return
        resp.media = self._long_poll(ticket_id, token, poll.wait, poll.version)

    def _long_poll(self, ticket_id: str, token: str, wait_s: float, version: int | None) -> dict:
        """Answer as soon as the ticket's version exceeds `version` (or the version it has now),
        else after `wait_s` with the unchanged state."""
        deadline = time.monotonic() + wait_s
        # Registered before the first read: an event between that read and the wait is kept.
        # An operator's drain does not end long-polls (clients would re-poll in a tight loop);
        # the stop sequence does, by closing the waiters.
        waiter = self._waiters.register(ticket_id)
        try:
            view = self._store.read_ticket(ticket_id, token)
            if waiter is None:  # cap reached or stopping: answer at once
                return view
            target = view["version"] if version is None else version
            while view["version"] <= target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or waiter.closed:
                    break
                waiter.wait(remaining)
                # Woken (or timed out): the event says "something changed", the store says what.
                view = self._store.read_ticket(ticket_id, token)
            return view
        finally:
            if waiter is not None:
                self._waiters.unregister(waiter)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, ticket_id: str) -> None:
        check_ticket_id(ticket_id)
        resp.media = self._store.cancel_ticket(ticket_id, ticket_token(req))

    def on_post_accept(self, req: falcon.Request, resp: falcon.Response, ticket_id: str) -> None:
        check_ticket_id(ticket_id)
        resp.media = self._store.accept(ticket_id, ticket_token(req))

    def on_post_decline(self, req: falcon.Request, resp: falcon.Response, ticket_id: str) -> None:
        check_ticket_id(ticket_id)
        resp.media = self._store.decline(ticket_id, ticket_token(req))
