"""The control-plane Falcon app, served on MMSERVER_ADMIN_LISTEN.

    POST /admin/shutdown {"reason"}  -> 202 control.request_shutdown(reason)
    POST /admin/drain                -> 200 control.drain()
    GET  /admin/status               -> 200 control.status()
    GET  /metrics                    -> Prometheus text from metrics(), no token; 404 without it
    + `routes` outside /admin (the service adds /healthz and /readyz), no token

Pure factory: everything arrives as an argument (the Control, the token, the metrics callable),
so tests build the same app with a hand-written Control.
"""
from __future__ import annotations

import logging
from typing import Callable, Mapping

import falcon

from . import errors
from .auth import BearerAuth, is_admin_path
from .resources import (
    BodyLimit,
    Control,
    DrainResource,
    MetricsResource,
    ShutdownResource,
    StatusResource,
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
    if max_body_bytes < 1:
        raise ValueError("max_body_bytes must be positive")
    routes = dict(routes or {})
    for path in routes:
        # extra routes are open (no token): they must not take a control-plane path
        if is_admin_path(path) or path == "/metrics":
            raise ValueError(f"extra route {path!r} is a control-plane path")
    app = falcon.App(
        # Authentication first: an unauthenticated caller learns nothing, not even body limits.
        middleware=[BearerAuth(token), BodyLimit(max_body_bytes), NoStore()],
    )
    errors.install(app)
    app.add_route("/admin/shutdown", ShutdownResource(control, max_body_bytes))
    app.add_route("/admin/drain", DrainResource(control))
    app.add_route("/admin/status", StatusResource(control))
    app.add_route("/metrics", MetricsResource(metrics))
    for path, resource in routes.items():
        app.add_route(path, resource)
    return app
