"""Backfill and leave endpoints: a game server changes its match's roster (docs/BACKFILL.md).

- POST /v1/matches/{match_id}/backfill: ask the matcher for players for open places;
- DELETE /v1/matches/{match_id}/backfill/{backfill_id}: withdraw the request (idempotent);
- DELETE /v1/matches/{match_id}/players/{player_id}: a player is gone, its place opens.
All take the server token.
"""
from __future__ import annotations

from typing import Mapping

import falcon

from mmserver.config import ModeConfig
from mmserver.http import validation
from mmserver.http.access import Access
from mmserver.http.errors import ApiError
from mmserver.http.servers import check_match_id
from mmserver.store import Store


class BackfillCollection:
    """POST /v1/matches/{match_id}/backfill"""

    def __init__(self, store: Store, access: Access, modes: Mapping[str, ModeConfig]) -> None:
        self._store = store
        self._access = access
        self._modes = modes

    def on_post(self, req: falcon.Request, resp: falcon.Response, match_id: str) -> None:
        self._access.server(self._access.caller(req))
        body = validation.read_json(req)
        check_match_id(match_id)
        # The slots are checked against the match's mode (teams, sizes, roles).
        mode = self._modes.get(self._store.match_mode(match_id))
        if mode is None:  # a mode removed from the configuration since the match formed
            raise ApiError(409, "Mode not configured", "This match's mode is no longer configured.")
        request = validation.backfill_request(body, mode)
        resp.media = self._store.create_backfill(match_id, mode, request.slots, request.ttl_s)
        resp.status = falcon.HTTP_201


class BackfillResource:
    """DELETE /v1/matches/{match_id}/backfill/{backfill_id}"""

    def __init__(self, store: Store, access: Access) -> None:
        self._store = store
        self._access = access

    def on_delete(self, req: falcon.Request, resp: falcon.Response, match_id: str, backfill_id: str) -> None:
        self._access.server(self._access.caller(req))
        check_match_id(match_id)
        if not validation.is_generated_id(backfill_id):
            raise ApiError(404, "Backfill not found", "No backfill has this id.")
        resp.media = self._store.cancel_backfill(match_id, backfill_id)


class MatchPlayerResource:
    """DELETE /v1/matches/{match_id}/players/{player_id}"""

    def __init__(self, store: Store, access: Access) -> None:
        self._store = store
        self._access = access

    def on_delete(self, req: falcon.Request, resp: falcon.Response, match_id: str, player_id: str) -> None:
        self._access.server(self._access.caller(req))
        check_match_id(match_id)
        resp.media = self._store.leave_match(match_id, validation.player_id(player_id))
