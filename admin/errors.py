"""Every error of the control plane is JSON `{"title", "description"}`, never a traceback.

Falcon's default serializer picks XML for clients that prefer it and leaves out an absent
description; this one always answers JSON with both keys. Unexpected exceptions are logged here
(with their traceback, in the log only) and answered as a plain 500.
"""
from __future__ import annotations

import json
import logging
from typing import Any

import falcon

logger = logging.getLogger(__name__)

# Descriptions for errors Falcon raises itself without one (routing, methods).
DEFAULT_DESCRIPTIONS = {
    404: "There is no such resource on the control plane.",
    405: "This resource does not accept that method.",
    500: "The control plane failed to handle the request; the details are in the service log.",
}


def serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    description = error.description or DEFAULT_DESCRIPTIONS.get(error.status_code, error.title)
    resp.content_type = falcon.MEDIA_JSON
    resp.data = json.dumps({"title": error.title, "description": description}).encode("utf-8")


def handle_unexpected(req: falcon.Request, resp: falcon.Response, error: Exception,
                      params: dict[str, Any]) -> None:
    # The traceback goes to the log and nowhere else; the path is logged, never the headers.
    logger.error("admin request failed: %s %s", req.method, req.path, exc_info=error)
    raise falcon.HTTPInternalServerError(title="500 Internal Server Error")


def install(app: falcon.App) -> None:
    app.set_error_serializer(serialize_error)
    app.add_error_handler(Exception, handle_unexpected)
