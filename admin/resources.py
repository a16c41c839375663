"""Thin control-plane resources: validate the request, call the Control, return its plain data.

Like gunicorn's ctl handlers, nothing here decides anything about the lifecycle: shutdown and
drain call the same service methods a signal or the stop sequence would. Errors are the public
API's (mmserver.http.errors).
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable, Protocol

import falcon

from mmserver.http.errors import ApiError
from mmserver.http.validation import BadRequest

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


def read_json_object(req: falcon.Request) -> dict:
    """The request body as a JSON object; 400 if absent or malformed.

    BodyLimit has already refused a body over the limit and buffered the rest.
    """
    raw = req.bounded_stream.read()
    if not raw.strip():
        raise BadRequest("A JSON body is required.")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def validate_reason(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("'reason' is required: a non-empty string saying why the replica stops.")
    reason = value.strip()
    if len(reason) > MAX_REASON_CHARS:
        raise BadRequest(f"'reason' is longer than {MAX_REASON_CHARS} characters.")
    # The reason is written to the log and to Sentry: no line breaks or other control
    # characters that could forge or garble a log line.
    if any(not char.isprintable() for char in reason):
        raise BadRequest("'reason' must not contain control characters.")
    return reason


class ShutdownResource:
    def __init__(self, control: Control) -> None:
        self._control = control

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        reason = validate_reason(read_json_object(req).get("reason"))
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
            raise ApiError(404, "Not Found", "Metrics are not enabled on this replica.")
        data, content_type = self._metrics()
        resp.data = data
        resp.content_type = content_type
