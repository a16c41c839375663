"""Every error the public API answers is JSON {"title", "description"} with the right status.

Falcon's own errors (404 route, 405, 415, malformed JSON) go through `serialize_error`; store
and validation errors are translated by the handlers registered in `install`. Anything else is a
bug: it is logged with its traceback and answered as a plain JSON 500, never a traceback.
Redis away is answered 503 to every request, and logged in one line per `REDIS_WARNING_S`.
"""
from __future__ import annotations

import logging
from typing import Any

import falcon

from mmserver.http.validation import ValidationError
from mmserver.logs import ThrottledWarnings
from mmserver.store import (
    Conflict,
    Forbidden,
    NotFound,
    PlayerBusy,
    RedisUnavailable,
    StoreError,
)

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 2  # what a client should wait before retrying a 503
# While Redis is away every request fails the same way: one line per this many seconds.
REDIS_WARNING_S = 10.0

# Falcon leaves the description of some errors empty; clients always get one sentence.
DEFAULT_DESCRIPTIONS = {
    400: "The request is malformed.",
    401: "This call needs an Authorization: Bearer token.",
    403: "The token does not grant access to this resource.",
    404: "There is nothing at this path.",
    405: "This method is not allowed on this path; see the Allow header.",
    409: "The request conflicts with the current state.",
    413: "The request body is larger than the server accepts.",
    415: "Send the body as application/json.",
    422: "The request breaks a rule.",
    500: "An unexpected error occurred; it has been logged.",
    503: "The service is temporarily unavailable; retry after the Retry-After delay.",
}


class ApiError(falcon.HTTPError):
    """An HTTPError that can carry extra JSON fields (e.g. the live ticket id of a 409)."""

    def __init__(self, status: int, title: str, description: str,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(falcon.code_to_http_status(status), title=title, description=description,
                         headers=headers)
        self.extra = extra


def unavailable(description: str) -> ApiError:
    return ApiError(503, "Service unavailable", description,
                    headers={"Retry-After": str(RETRY_AFTER_S)})


def serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """JSON whatever the Accept header says: clients of this API speak JSON only."""
    code = error.status_code
    title = error.title or ""
    if title.startswith(f"{code} "):  # Falcon's default title is the status line: drop the number
        title = title[4:]
    body: dict[str, Any] = {
        "title": title or falcon.code_to_http_status(code)[4:],
        "description": error.description or DEFAULT_DESCRIPTIONS.get(code, error.title or ""),
    }
    body.update(getattr(error, "extra", {}))
    resp.content_type = falcon.MEDIA_JSON
    resp.media = body


def _store_error_handler(redis_warnings: ThrottledWarnings):
    def handle(req: falcon.Request, resp: falcon.Response, error: StoreError, params: dict) -> None:
        if isinstance(error, RedisUnavailable):
            redis_warnings.warning("Redis unavailable during %s %s: %s", req.method, req.path, error)
            raise unavailable("The matchmaking store is unreachable; retry shortly.")
        _store_error(req, error)

    return handle


def _store_error(req: falcon.Request, error: StoreError) -> None:
    title = getattr(error, "title", None) or type(error).__name__
    description = getattr(error, "description", None) or str(error)
    if isinstance(error, NotFound):
        raise ApiError(404, title, description)
    if isinstance(error, Forbidden):
        raise ApiError(403, title, description)
    if isinstance(error, PlayerBusy):
        raise ApiError(409, title, description, ticket_id=error.ticket_id)
    if isinstance(error, Conflict):
        raise ApiError(409, title, description)
    raise _internal(req, error)


def _validation_error(req: falcon.Request, resp: falcon.Response, error: ValidationError,
                      params: dict) -> None:
    raise ApiError(error.status, error.title, error.description)


def _internal(req: falcon.Request, error: BaseException) -> ApiError:
    logger.error("unhandled error in %s %s", req.method, req.path, exc_info=error)
    return ApiError(500, "Internal error", DEFAULT_DESCRIPTIONS[500])


def _unexpected(req: falcon.Request, resp: falcon.Response, error: Exception, params: dict) -> None:
    raise _internal(req, error)


def install(app: falcon.App) -> None:
    app.set_error_serializer(serialize_error)
    # Falcon picks the handler of the most specific class, so HTTPError keeps its own handler.
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(StoreError, _store_error_handler(ThrottledWarnings(logger, REDIS_WARNING_S)))
    app.add_error_handler(ValidationError, _validation_error)
