"""A real HTTP server receiving webhooks, for tests and the benchmark: it checks each
signature as a receiver would (mmserver.webhooks.signing.verify), records what arrived, and
answers with what `answer(event_id, attempt)` says (200 by default)."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from mmserver.webhooks import signing
from tests.waiting import wait_until


@dataclass
class Received:
    event_id: str
    event: dict
    signature_ok: bool
    answered: int
    at: float  # time.time() when it arrived


class WebhookReceiver:
    def __init__(self, secret: str, answer: Callable[[str, int], int] | None = None) -> None:
        self.secret = secret.encode()
        self.answer = answer or (lambda event_id, attempt: 200)
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.attempts: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as mmserver's sender uses it

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver._on_post(self, body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/mm"

    def start(self) -> "WebhookReceiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _on_post(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        arrived = time.time()
        ok = signing.verify(self.secret, body, handler.headers.get("X-Mmserver-Signature"), arrived)
        event_id = handler.headers.get("X-Mmserver-Event-Id", "")
        try:
            event = json.loads(body)
        except ValueError:
            event = {}
        with self.lock:
            attempt = self.attempts[event_id] = self.attempts.get(event_id, 0) + 1
        status = self.answer(event_id, attempt) if ok else 400
        with self.lock:
            self.received.append(Received(event_id, event, ok, status, arrived))
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    # --- what the tests look at ---

    def delivered_ids(self) -> set[str]:
        with self.lock:
            return {r.event_id for r in self.received if 200 <= r.answered < 300}

    def bad_signatures(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if not r.signature_ok]

    def wait_for(self, ids: set[str], timeout: float) -> set[str]:
        """Wait until every id was answered 2xx; returns those still missing."""
        wait_until(lambda: not ids - self.delivered_ids(), timeout, interval=0.05)
        return ids - self.delivered_ids()
