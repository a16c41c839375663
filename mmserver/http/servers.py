"""Dedicated-server and match endpoints: register/heartbeat, deregister, the match roster,
"match over".

Servers use the one server token of the configuration (compared in constant time by
access.py); game backends may read a match too. One address is one server: registering an
address another server holds is a 409.
"""
from __future__ import annotations

from typing import Sequence

import falcon

from mmserver.http import validation
from mmserver.http.access import Access
from mmserver.http.errors import ApiError
from mmserver.store import Store


def check_match_id(match_id: str) -> None:
    if not validation.is_generated_id(match_id):
        raise ApiError(404, "Match not found", "No match has this id.")


class ServerResource:
    """PUT and DELETE /v1/servers/{server_id}"""

    def __init__(self, store: Store, access: Access, regions: Sequence[str] = ()) -> None:
        self._store = store
        self._access = access
        self._regions = tuple(regions)

    def on_put(self, req: falcon.Request, resp: falcon.Response, server_id: str) -> None:
        self._access.server(self._access.caller(req))
        server = validation.server_id(server_id)
        heartbeat = validation.server_heartbeat(validation.read_json(req), self._regions)
        resp.media = self._store.heartbeat_server(server, heartbeat.address, heartbeat.region, heartbeat.sent)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, server_id: str) -> None:
        self._access.server(self._access.caller(req))
        resp.media = self._store.deregister_server(validation.server_id(server_id))


class MatchResource:
    """GET /v1/matches/{match_id}: the roster (server token or backend key)."""

    def __init__(self, store: Store, access: Access) -> None:
        self._store = store
        self._access = access

    def on_get(self, req: falcon.Request, resp: falcon.Response, match_id: str) -> None:
        self._access.match_reader(self._access.caller(req))
        check_match_id(match_id)
        resp.media = self._store.match(match_id)


class MatchFinishResource:
    """POST /v1/matches/{match_id}/finish"""

    def __init__(self, store: Store, access: Access) -> None:
        self._store = store
        self._access = access

    def on_post(self, req: falcon.Request, resp: falcon.Response, match_id: str) -> None:
        self._access.server(self._access.caller(req))
        check_match_id(match_id)
        resp.media = self._store.finish_match(match_id)
