"""Dedicated-server endpoints: register/heartbeat and "match over".

Guarded by the one server token of the configuration, compared in constant time. Without a
token configured these endpoints are closed (403): an open registration would let anyone
receive players.
"""
from __future__ import annotations

import hmac

import falcon

from mmserver.http import validation
from mmserver.http.errors import ApiError
from mmserver.store import Store


class ServerAuth:
    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    def check(self, req: falcon.Request) -> None:
        if self._token is None:
            raise ApiError(403, "Server endpoints disabled",
                           "No server token is configured on this service ([servers] token).")
        given = validation.bearer_token(req)
        if given is None:
            raise falcon.HTTPUnauthorized(
                title="Token required",
                description="Send the server token as Authorization: Bearer <token>.",
                challenges=["Bearer"],
            )
        if not hmac.compare_digest(given.encode(), self._token):
            raise falcon.HTTPUnauthorized(
                title="Invalid token",
                description="The server token is not valid.",
                challenges=["Bearer"],
            )


class ServerResource:
    """PUT /v1/servers/{server_id}"""

    def __init__(self, store: Store, auth: ServerAuth) -> None:
        self._store = store
        self._auth = auth

    def on_put(self, req: falcon.Request, resp: falcon.Response, server_id: str) -> None:
        self._auth.check(req)
        server = validation.server_id(server_id)
        address = validation.server_heartbeat(validation.read_json(req))
        resp.media = self._store.heartbeat_server(server, address)


class MatchFinishResource:
    """POST /v1/matches/{match_id}/finish"""

    def __init__(self, store: Store, auth: ServerAuth) -> None:
        self._store = store
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response, match_id: str) -> None:
        self._auth.check(req)
        if not validation.is_generated_id(match_id):
            raise ApiError(404, "Match not found", "No match has this id.")
        resp.media = self._store.finish_match(match_id)
