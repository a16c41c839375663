"""The control-plane Falcon app, served on MMSERVER_ADMIN_LISTEN.

    POST   /admin/shutdown {"reason"}      -> 202 control.request_shutdown(reason)
    POST   /admin/drain                    -> 200 control.drain()
    POST   /admin/undrain                  -> 200 control.undrain()
    GET    /admin/status                   -> 200 control.status()
    GET    /admin/matches?limit=           -> 200 control.running_matches(limit): running matches, newest first
    GET    /admin/matches/{match_id}       -> 200 control.match(match_id)
    POST   /admin/matches/{match_id}/finish -> 200 control.finish_match(match_id)
    GET    /admin/players/{player_id}      -> 200 control.player(player_id)
    DELETE /admin/players/{player_id}      -> 200 control.release_player(player_id)
    GET    /admin/webhooks/dead?after=&limit= -> 200 control.dead_letters(after, limit)
    POST   /admin/webhooks/dead/replay {} | {"ids"} -> 200 control.replay_dead_letters(ids | None)
    DELETE /admin/webhooks/dead [{"ids"}]  -> 200 control.discard_dead_letters(ids | None)
    GET    /metrics                        -> Prometheus text from metrics(), no token; 404 without it
    GET    /console, /console/{file}       -> the operator console (admin/console.py), no token:
                                              static files only, its data calls are /admin/*
    + `routes` outside /admin (the service adds /healthz and /readyz), no token

The bearer token is read and compared as on the public listener (mmserver.credentials), bodies
are limited by the same BodyLimit, and errors are the same JSON {"title", "description"}
(mmserver.http.errors): a store's NotFound is 404, RedisUnavailable 503 with Retry-After.

Pure factory: everything arrives as an argument (the Control, the token, the metrics callable),
so tests build the same app with a hand-written Control.
"""
from __future__ import annotations

import logging
from typing import Callable, Mapping

import falcon

from mmserver.http import errors
from mmserver.http.body import BodyLimit

from .auth import BearerAuth, is_admin_path
from .console import CONSOLE_PATH, ConsoleResource, SecurityHeaders
from .resources import (
    Control,
    DeadLettersResource,
    DrainResource,
    MatchResource,
    MatchesResource,
    MetricsResource,
    PlayerResource,
    ShutdownResource,
    StatusResource,
    UndrainResource,
)

logger = logging.getLogger(__name__)

__all__ = ["Control", "create_admin_app"]


class NoStore:
    """Middleware: admin answers describe a moment of one replica; no cache should keep them."""

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: object,
                         req_succeeded: bool) -> None:
        if req.path.startswith("/admin"):
            resp.set_header("Cache-Control", "no-store")


def create_admin_app(
    control: Control,
    *,
    token: str,
    metrics: Callable[[], tuple[bytes, str]] | None = None,
    max_body_bytes: int = 16384,
    routes: Mapping[str, object] | None = None,
) -> falcon.App:
    routes = dict(routes or {})
    for path in routes:
        # extra routes are open (no token): they must not take a control-plane path
        if is_admin_path(path) or path == "/metrics" or path.startswith(CONSOLE_PATH):
            raise ValueError(f"extra route {path!r} is a control-plane path")
    app = falcon.App(
        # Authentication first: an unauthenticated caller learns nothing, not even body limits,
        # and its body is never read.
        middleware=[BearerAuth(token), BodyLimit(max_body_bytes), NoStore(), SecurityHeaders()],
    )
    errors.install(app)
    matches = MatchResource(control)
    app.add_route("/admin/shutdown", ShutdownResource(control))
    app.add_route("/admin/drain", DrainResource(control))
    app.add_route("/admin/undrain", UndrainResource(control))
    app.add_route("/admin/status", StatusResource(control))
    app.add_route("/admin/matches", MatchesResource(control))
    app.add_route("/admin/matches/{match_id}", matches)
    app.add_route("/admin/matches/{match_id}/finish", matches, suffix="finish")
    app.add_route("/admin/players/{player_id}", PlayerResource(control))
    dead_letters = DeadLettersResource(control)
    app.add_route("/admin/webhooks/dead", dead_letters)
    app.add_route("/admin/webhooks/dead/replay", dead_letters, suffix="replay")
    app.add_route("/metrics", MetricsResource(metrics))
    console = ConsoleResource()
    app.add_route(CONSOLE_PATH, console)
    app.add_route(CONSOLE_PATH + "/{name}", console, suffix="file")
    for path, resource in routes.items():
        app.add_route(path, resource)
    return app
