"""HttpServer at its connection limit, on real sockets: idle connections make room for new ones.

Regression: waitress stops accepting at `connection_limit` open sockets (both listeners: they
share one map), so enough idle keep-alive connections locked every new client, and the control
plane, out until the idle ones timed out (120 s). Now the longest-idle connections are closed
when a client waits to connect; a connection with a request in progress never is.
"""
from __future__ import annotations

import socket
import threading
import time

import pytest

from mmserver.config import Address
from mmserver.http.server import HttpServer
from tests.hostile.rawhttp import read_answer

LIMIT = 24  # the map also holds 2 listeners and 2 triggers: 20 client connections fit


def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        environ["mm.release"].wait(10)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


@pytest.fixture
def server():
    release = threading.Event()

    def wrapped(environ, start_response):
        environ["mm.release"] = release
        return app(environ, start_response)

    http = HttpServer([(Address("127.0.0.1", 0), wrapped), (Address("127.0.0.1", 0), wrapped)],
                      threads=4, max_request_body_size=1024, connection_limit=LIMIT)
    http.start()
    http.release = release
    yield http
    release.set()
    http.drain(time.monotonic() + 3)


def keep_alive(address: Address, path: str = "/") -> socket.socket:
    """A connection that completed one HTTP/1.1 request and stays open."""
    sock = socket.create_connection((address.host, address.port), timeout=5)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    if path != "/slow":
        assert read_answer(sock).status == 200
    return sock


def one_request(address: Address, timeout: float = 2.0) -> tuple[int, float]:
    started = time.monotonic()
    with socket.create_connection((address.host, address.port), timeout=timeout) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return read_answer(sock).status, time.monotonic() - started


def is_closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(2)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_new_clients_are_served_past_the_limit_and_the_oldest_idle_connections_go(server):
    public, admin = server.addresses
    idle = [keep_alive(public) for _ in range(3 * LIMIT)]
    try:
        for address in (public, admin):
            status, took = one_request(address)
            assert status == 200
            assert took < 1.0
        # the newest connection survives; the very first was reclaimed long ago
        assert is_closed_by_server(idle[0])
        idle[-1].sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_answer(idle[-1]).status == 200
    finally:
        for sock in idle:
            sock.close()


def test_a_request_in_progress_is_never_reclaimed(server):
    public, _admin = server.addresses
    slow = keep_alive(public, "/slow")
    time.sleep(0.2)  # the slow request is running in a worker, its connection the oldest
    idle = [keep_alive(public) for _ in range(2 * LIMIT)]
    try:
        assert one_request(public)[0] == 200
        server.release.set()
        slow.settimeout(5)
        assert read_answer(slow).status == 200
    finally:
        slow.close()
        for sock in idle:
            sock.close()


def test_idle_connections_go_before_half_received_requests(server):
    public, _admin = server.addresses
    partial = []
    for _ in range(8):
        sock = socket.create_connection((public.host, public.port), timeout=5)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")  # headers never finished
        partial.append(sock)
    time.sleep(0.2)  # the half-received requests are the oldest connections
    idle = [keep_alive(public) for _ in range(LIMIT)]
    try:
        assert one_request(public)[0] == 200
        # the idle ones were closed to make room; the half-sent ones, older, are still open
        for sock in partial:
            sock.sendall(b"\r\n")
            sock.settimeout(5)
            assert read_answer(sock).status == 200
    finally:
        for sock in partial + idle:
            sock.close()
