"""The drain contract of mmserver/http/server.py, on real sockets and threads.

The drain reaches into waitress internals (the socket map, channels, the task dispatcher).
These tests are the ones that must fail if a waitress upgrade breaks it.
"""
from __future__ import annotations

import hashlib
import http.client
import importlib.metadata
import socket
import threading
import time

import pytest

from mmserver.config import Address
from mmserver.http.server import HttpServer
from tests.waiting import wait_until

SLOW_S = 6.0  # longer than waitress's own 5 s dispatcher shutdown timeout
BIG_BODY = hashlib.sha256(b"mmserver").digest() * (8 * 1024 * 1024 // 32)  # 8 MiB


def test_waitress_is_the_version_the_drain_was_written_for():
    version = importlib.metadata.version("waitress")
    assert version.startswith("3.0."), (
        f"waitress {version} is installed; mmserver/http/server.py drives waitress 3.0 internals "
        "(wasyncore loop passes, HTTPChannel.requests/close_when_flushed, "
        "ThreadedTaskDispatcher.shutdown). Re-read waitress's server.py, channel.py and task.py, "
        "check the drain still holds (this file), then move the pin in setup.py."
    )


def make_app(started: threading.Event, release: threading.Event, slow_s: float):
    """/slow answers BIG_BODY after `slow_s` (or when `release` is set); anything else: b"ok"."""

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            started.set()
            release.wait(slow_s)
            start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                      ("Content-Length", str(len(BIG_BODY)))])
            return [BIG_BODY]
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    return app


def admin_app(environ, start_response):
    start_response("200 OK", [("Content-Length", "5")])
    return [b"admin"]


def start_server(app) -> HttpServer:
    server = HttpServer(
        [(Address("127.0.0.1", 0), app), (Address("127.0.0.1", 0), admin_app)],
        threads=4,
        max_request_body_size=1024,
    )
    server.bind()
    server.start()
    return server


def keep_alive_get(address: Address, path: str) -> tuple[http.client.HTTPConnection, int, bytes]:
    """One HTTP/1.1 request on a connection left open afterwards (keep-alive)."""
    conn = http.client.HTTPConnection(address.host, address.port, timeout=SLOW_S + 10)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    assert not response.will_close, "the server should keep the connection alive"
    return conn, response.status, body


def server_closed(conn: http.client.HTTPConnection, timeout: float) -> bool:
    """True if the server closes the connection (we read EOF) within `timeout`."""
    conn.sock.settimeout(timeout)
    try:
        return conn.sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def loop_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "http-loop" or t.name.startswith("waitress-")]


def test_drain_finishes_a_long_request_closes_idle_connections_and_stops_the_loop():
    started, release = threading.Event(), threading.Event()
    server = start_server(make_app(started, release, SLOW_S))
    public, admin = server.addresses
    try:
        idle, status, body = keep_alive_get(public, "/fast")
        assert (status, body) == (200, b"ok")
        idle_admin, status, body = keep_alive_get(admin, "/")
        assert (status, body) == (200, b"admin")

        slow_result: dict = {}

        def slow_client() -> None:
            conn, status, body = keep_alive_get(public, "/slow")
            slow_result.update(status=status, body=body, finished=time.monotonic(),
                               closed_after=server_closed(conn, 5))
            conn.close()

        client = threading.Thread(target=slow_client, name="test-slow-client")
        client.start()
        assert started.wait(5)
        assert server.in_flight() == 1
        drain_started = time.monotonic()

        server.stop_accepting()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((public.host, public.port), timeout=2)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((admin.host, admin.port), timeout=2)

        outcome: list[bool] = []
        drainer = threading.Thread(
            target=lambda: outcome.append(server.drain(time.monotonic() + SLOW_S + 8)),
            name="test-drain",
        )
        drainer.start()

        # idle keep-alive connections are closed by the server at once, on both listeners
        assert server_closed(idle, 2)
        assert server_closed(idle_admin, 2)
        assert server.in_flight() == 1  # the long request still runs

        drainer.join(SLOW_S + 12)
        assert not drainer.is_alive()
        client.join(10)
        assert outcome == [True]
        # the long request outlived waitress's 5 s shutdown timeout and got its whole answer
        assert slow_result["finished"] - drain_started > 5.0
        assert slow_result["status"] == 200
        assert slow_result["body"] == BIG_BODY
        # and its keep-alive connection was closed once the answer was written
        assert slow_result["closed_after"] is True
        # the loop thread exited and the workers stopped
        assert not server.is_alive()
        assert wait_until(lambda: not loop_threads(), 2), loop_threads()
        assert server.in_flight() == 0
    finally:
        release.set()
        server.drain(time.monotonic() + 2)


def test_drain_with_a_deadline_too_short_cuts_and_returns_false_within_the_bound():
    started, release = threading.Event(), threading.Event()
    server = start_server(make_app(started, release, 10.0))
    public = server.addresses[0]
    slow_result: dict = {}

    def slow_client() -> None:
        conn = http.client.HTTPConnection(public.host, public.port, timeout=10)
        try:
            conn.request("GET", "/slow")
            slow_result["status"] = conn.getresponse().status
        except (http.client.HTTPException, OSError) as error:
            slow_result["error"] = error
        finally:
            conn.close()

    client = threading.Thread(target=slow_client, name="test-slow-client")
    client.start()
    try:
        assert started.wait(5)
        begun = time.monotonic()
        assert server.drain(begun + 0.5) is False
        elapsed = time.monotonic() - begun
        assert 0.4 <= elapsed < 0.5 + 2.5, elapsed
        assert not server.is_alive()
        assert "http-loop" not in [t.name for t in threading.enumerate()]
        # the cut request's connection was closed without an answer
        client.join(5)
        assert "error" in slow_result, slow_result
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((public.host, public.port), timeout=2)
        # a second drain answers at once with the same verdict
        assert server.drain(time.monotonic() + 1) is False
    finally:
        release.set()  # let the worker that ran the cut request finish
        client.join(5)
