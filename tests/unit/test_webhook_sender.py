"""The webhook sender against real sockets: an attempt is bounded as a whole, not per read."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from mmserver.webhooks import signing
from mmserver.webhooks.sender import Sender
from tests.webhook_receiver import WebhookReceiver


class Trickler:
    """Reads a request, then answers a header one byte every 0.1 s: each read of the sender
    returns within any timeout, the answer never ends."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not self.stop.is_set():
                try:
                    conn.sendall(b"a")
                except OSError:
                    return
                time.sleep(0.1)


@pytest.mark.timeout(20)
def test_an_answer_trickled_a_byte_at_a_time_ends_the_attempt_at_its_timeout():
    trickler = Trickler()
    try:
        sender = Sender(trickler.url, 0.5)
        started = time.monotonic()
        outcome = sender.post(b"{}", {"Content-Type": "application/json"})
        took = time.monotonic() - started
    finally:
        trickler.stop.set()
        trickler.listener.close()
    assert not outcome.ok and outcome.error.startswith("timeout"), outcome
    assert 0.5 <= took < 1.5, took


def test_attempts_within_their_timeout_keep_one_connection_past_earlier_deadlines():
    secret = "secret-of-some-length-for-the-receiver"
    receiver = WebhookReceiver(secret).start()

    def signed() -> dict:
        return {"Content-Type": "application/json",
                "X-Mmserver-Signature": signing.signature_header(secret.encode(), int(time.time()), b"{}")}

    try:
        sender = Sender(receiver.url, 0.3)
        first = sender.post(b"{}", signed())
        time.sleep(0.5)  # the first attempt's deadline passes while the connection idles
        second = sender.post(b"{}", signed())
        assert first.status == 200 and second.status == 200
        assert len(receiver.received) == 2
    finally:
        receiver.stop()
