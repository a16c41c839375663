"""Thin control-plane resources: validate the request, call the Control, return its plain data.

Like gunicorn's ctl handlers, nothing here decides anything about the lifecycle: shutdown and
drain call the same service methods a signal or the stop sequence would.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable, Protocol

import falcon

logger = logging.getLogger(__name__)

MAX_REASON_CHARS = 200


class Control(Protocol):
    """What the control plane needs from the service (implemented by mmserver/service.py)."""

    def request_shutdown(self, reason: str) -> dict:
        """Start the stop sequence (exit status 1); returns {"state": "stopping", "reason", "exit_status"}."""
        ...

    def drain(self) -> dict:
        """Stop taking new tickets and report not-ready; returns {"state": "draining", ...}."""
        ...

    def status(self) -> dict:
        """Lifecycle state, workers, queues, sessions, servers, replicas: plain JSON-ready data."""
        ...


Metrics = Callable[[], tuple[bytes, str]]


def send_json(resp: falcon.Response, data: Any, status: int = 200) -> None:
    # Serialized here rather than through resp.media: Falcon renders media after the error
    # handlers have run, so a value json cannot encode would escape as a bare 500 page.
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = json.dumps(data).encode("utf-8")


def read_json_object(req: falcon.Request, max_body_bytes: int) -> dict:
    """The request body as a JSON object; 400 if absent or malformed, 413 if over the limit."""
    # BodyLimit has already refused a declared Content-Length over the limit (waitress declares
    # one for chunked bodies too, after de-chunking); the bounded read is a second guard so a
    # body is never read past the limit whatever the server in front does.
    raw = req.bounded_stream.read(max_body_bytes + 1)
    if len(raw) > max_body_bytes:
        raise falcon.HTTPContentTooLarge(
            title="413 Content Too Large",
            description=f"The request body is over the {max_body_bytes}-byte limit.",
        )
    if not raw.strip():
        raise falcon.HTTPBadRequest(title="400 Bad Request", description="A JSON body is required.")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise falcon.HTTPBadRequest(
            title="400 Bad Request", description="The request body is not valid JSON."
        ) from None
    if not isinstance(body, dict):
        raise falcon.HTTPBadRequest(
            title="400 Bad Request", description="The request body must be a JSON object."
        )
    return body


def validate_reason(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise falcon.HTTPBadRequest(
            title="400 Bad Request",
            description="'reason' is required: a non-empty string saying why the replica stops.",
        )
    reason = value.strip()
    if len(reason) > MAX_REASON_CHARS:
        raise falcon.HTTPBadRequest(
            title="400 Bad Request",
            description=f"'reason' is longer than {MAX_REASON_CHARS} characters.",
        )
    # The reason is written to the log and to Sentry: no line breaks or other control
    # characters that could forge or garble a log line.
    if any(not char.isprintable() for char in reason):
        raise falcon.HTTPBadRequest(
            title="400 Bad Request", description="'reason' must not contain control characters."
        )
    return reason


class BodyLimit:
    """Middleware: 413 for any request that declares a body over the limit, before it is read."""

    def __init__(self, max_body_bytes: int) -> None:
        self._max = max_body_bytes

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        length = req.content_length  # Falcon answers 400 itself for a malformed Content-Length
        if length is not None and length > self._max:
            raise falcon.HTTPContentTooLarge(
                title="413 Content Too Large",
                description=f"The request body is over the {self._max}-byte limit.",
            )


class ShutdownResource:
    def __init__(self, control: Control, max_body_bytes: int) -> None:
        self._control = control
        self._max_body_bytes = max_body_bytes

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json_object(req, self._max_body_bytes)
        reason = validate_reason(body.get("reason"))
        logger.warning("admin shutdown requested from %s: %s", req.remote_addr, reason)
        send_json(resp, self._control.request_shutdown(reason), status=202)


class DrainResource:
    def __init__(self, control: Control) -> None:
        self._control = control

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        # No body is expected; whatever was sent (within the limit) is ignored.
        logger.warning("admin drain requested from %s", req.remote_addr)
        send_json(resp, self._control.drain())


class StatusResource:
    def __init__(self, control: Control) -> None:
        self._control = control

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, self._control.status())


class MetricsResource:
    """Prometheus scrape endpoint; open like /healthz, since it carries no secrets."""

    def __init__(self, metrics: Metrics | None) -> None:
        self._metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._metrics is None:
            raise falcon.HTTPNotFound(
                title="404 Not Found", description="Metrics are not enabled on this replica."
            )
        data, content_type = self._metrics()
        resp.data = data
        resp.content_type = content_type
