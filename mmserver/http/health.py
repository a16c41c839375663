"""Liveness and readiness for load balancers, Kubernetes probes and systemd operators."""
from __future__ import annotations

import falcon

from mmserver.http.errors import RETRY_AFTER_S
from mmserver.readiness import Readiness


class Liveness:
    """200 while the process answers HTTP at all: nothing here may depend on Redis."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "alive"}


class ReadinessResource:
    """200 when Redis answers and the replica is not draining; else 503 naming what is missing."""

    def __init__(self, readiness: Readiness) -> None:
        self._readiness = readiness

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ready, reason = self._readiness.check()
        if ready:
            resp.media = {"status": reason}
            return
        # Probes read the status; the title and description keep the shape of every other error.
        resp.status = falcon.HTTP_503
        resp.set_header("Retry-After", str(RETRY_AFTER_S))
        resp.media = {"status": reason, "title": "Not ready",
                      "description": f"This replica should not receive traffic: {reason}."}
