"""The request-body limit shared by both listeners (the public API and the control plane)."""
from __future__ import annotations

import io

import falcon

from mmserver.http import errors
from mmserver.decimal_text import parse_decimal


class BodyLimit:
    """413 for a body over `max_bytes`, checked before anything reads it.

    A declared Content-Length over the limit is refused without reading. Otherwise the body is
    read here, at most one byte more than allowed (or than declared), so a chunked body over
    the limit and a body longer than its Content-Length are refused too, and the rest of the
    app sees a small in-memory stream. Reading past Content-Length is safe under waitress,
    which hands the app its own buffer of the body, never the socket.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("the body limit must be positive")
        self._max_bytes = max_bytes

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        env = req.env
        declared_raw = env.get("CONTENT_LENGTH")
        declared: int | None = None
        if declared_raw:
            declared = parse_decimal(declared_raw.strip())
            if declared is None:
                raise errors.ApiError(400, "Invalid Content-Length", "Content-Length must be a number.")
            if declared > self._max_bytes:
                raise self._too_large()
        limit = self._max_bytes if declared is None else declared
        body = env["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            if declared is not None and len(body) <= self._max_bytes:
                raise errors.ApiError(413, "Body longer than declared",
                                      "The body is longer than its Content-Length.")
            raise self._too_large()
        buffered = io.BytesIO(body)
        env["wsgi.input"] = buffered
        env["CONTENT_LENGTH"] = str(len(body))
        req.stream = buffered

    def _too_large(self) -> errors.ApiError:
        return errors.ApiError(413, "Body too large",
                               f"The request body must not exceed {self._max_bytes} bytes.")
