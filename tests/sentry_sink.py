"""A real local Sentry ingest for tests: an HTTP server that accepts envelopes and keeps the events.

    with SentrySink() as sink:                  # or SentrySink(delay_s=2.0) for a slow ingest
        telemetry = Telemetry(sink.dsn, release="test")
        ...
        event = sink.wait_for(lambda e: "admin" in e["message"], timeout=5)

It implements the one endpoint the SDK uses, `POST /api/<project>/envelope/`, with plain, gzip
or (when the brotli module is present) br bodies. An event is recorded only once its response is
about to be sent, after the optional delay: what `events()` shows is what the SDK was told had
arrived. The server is threaded, so a slow answer to one envelope does not hold the others.
"""
from __future__ import annotations

import gzip
import json
import re
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

try:
    import brotli  # type: ignore[import-not-found]
except ImportError:  # the SDK only sends br when it can import brotli itself
    brotli = None

_ENVELOPE_PATH = re.compile(r"^/api/(?P<project>[^/]+)/envelope/?$")


def parse_envelope(body: bytes) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]:
    """Split a Sentry envelope into its header and (item header, payload) pairs."""
    header_line, _, rest = body.partition(b"\n")
    header = json.loads(header_line) if header_line.strip() else {}
    items: list[tuple[dict[str, Any], bytes]] = []
    while rest:
        item_header_line, _, rest = rest.partition(b"\n")
        if not item_header_line.strip():
            continue
        item_header = json.loads(item_header_line)
        length = item_header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length:]
            if rest.startswith(b"\n"):
                rest = rest[1:]
        items.append((item_header, payload))
    return header, items


def _decode(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br" and brotli is not None:
        return brotli.decompress(body)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


class SentrySink:
    def __init__(self, delay_s: float = 0.0, host: str = "127.0.0.1") -> None:
        self.delay_s = delay_s  # may be changed while running
        self._host = host
        self._condition = threading.Condition()
        self._envelopes: list[tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]] = []
        self._requests = 0
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    def start(self) -> "SentrySink":
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                sink._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._server = ThreadingHTTPServer((self._host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="sentry-sink", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()  # cuts any delayed answer short
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "SentrySink":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # --- what tests read ---

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the sink first"
        return self._server.server_address[1]

    @property
    def dsn(self) -> str:
        return f"http://public@{self._host}:{self.port}/1"

    @property
    def requests(self) -> int:
        """Envelope requests received so far (answered or not)."""
        with self._condition:
            return self._requests

    def envelopes(self) -> list[tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]]:
        with self._condition:
            return list(self._envelopes)

    def events(self) -> list[dict[str, Any]]:
        """Every error/message event received, in arrival order."""
        with self._condition:
            return [
                json.loads(payload)
                for _header, items in self._envelopes
                for item_header, payload in items
                if item_header.get("type") == "event"
            ]

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        """The first event for which `predicate(event)` is true, waiting up to `timeout`; else None."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for event in self.events():
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._condition.wait(remaining)

    # --- the ingest ---

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        match = _ENVELOPE_PATH.match(request.path.split("?", 1)[0])
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        with self._condition:
            self._requests += 1
        if match is None:
            self._answer(request, 404, {"detail": "not an envelope endpoint"})
            return
        try:
            envelope = parse_envelope(_decode(raw, request.headers.get("Content-Encoding", "")))
        except (ValueError, OSError, EOFError) as error:  # bad JSON, bad gzip, unknown encoding
            self._answer(request, 400, {"detail": str(error)})
            return
        if self.delay_s > 0 and self._closing.wait(self.delay_s):
            return  # stopping: the SDK gets no answer, as from an ingest that went away
        with self._condition:
            self._envelopes.append(envelope)
            self._condition.notify_all()
        self._answer(request, 200, {"id": envelope[0].get("event_id")})

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        try:
            request.send_response(status)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)
        except OSError:
            pass  # the SDK gave up on this request (its own timeout): nothing to answer
