"""Parked long-polls (mmserver/http/server.py, longpoll.py) on real sockets and threads.

A waiting long-poll holds no worker thread: waitress keeps its request in the channel and the
waiter's wake hands it back to a worker. This reaches into waitress internals (Task.service and
HTTPChannel.service letting a BaseException through, `channel.requests`, `server.add_task`):
these tests, with test_http_drain.py, are the ones that fail if a waitress upgrade breaks it.
"""
from __future__ import annotations

import http.client
import importlib.metadata
import signal
import socket
import struct
import threading
import time
import urllib.parse

import pytest

from mmserver.config import Address
from mmserver.http import longpoll
from mmserver.http.server import HttpServer
from mmserver.http.waiters import Waiters
from tests.process.harness import MMServer, request
from tests.waiting import PROMPTLY_S, wait_until

LONG_S = 30  # a wait= no test waits out: an answer before it came from a wake


def test_waitress_is_pinned_to_the_version_parking_was_written_for():
    assert importlib.metadata.version("waitress") == "3.0.2", (
        "mmserver/http/server.py parks long-polls through waitress 3.0.2 internals (Task.service and "
        "HTTPChannel.service letting a BaseException through before the request is popped, "
        "channel.requests, server.add_task, WSGITask.get_environment). Re-read waitress's "
        "channel.py and task.py, run this file, then move the pin in setup.py.")


def make_app(waiters: Waiters, versions: dict[str, int]):
    """/<key>?wait=S: long-polls until versions[key] exceeds its value at the first read;
    /ping: answers at once. The body is the version answered."""

    def app(environ, start_response):
        key = environ["PATH_INFO"].strip("/")
        if key == "ping":
            start_response("200 OK", [("Content-Length", "4")])
            return [b"pong"]
        if longpoll.resuming(environ):
            answer = longpoll.resume(environ)
        else:
            wait_s = float(urllib.parse.parse_qs(environ["QUERY_STRING"])["wait"][0])
            answer = longpoll.start(environ, waiters, key, lambda: versions.get(key, 0),
                                    lambda first: lambda version: version > first, wait_s)
        if answer.parked:
            start_response("500 Never Sent", [])  # the server never writes a parked pass
            return [b"parked"]
        body = str(answer.result).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    return app


def start_server(app, threads: int = 1) -> HttpServer:
    server = HttpServer([(Address("127.0.0.1", 0), app)], threads=threads, max_request_body_size=1024)
    server.bind()
    server.start()
    return server


class Poll(threading.Thread):
    """One keep-alive connection: a long-poll, then (optionally) a plain request on it."""

    def __init__(self, address: Address, path: str, then: str | None = None) -> None:
        super().__init__(name=f"poll{path}", daemon=True)
        self.address, self.path, self.then = address, path, then
        self.answers: list[tuple[int, bytes]] = []

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.address.host, self.address.port, timeout=LONG_S + 10)
        for path in [self.path] + ([self.then] if self.then else []):
            conn.request("GET", path)
            response = conn.getresponse()
            self.answers.append((response.status, response.read()))
        conn.close()


def test_parked_long_polls_hold_no_worker_and_answer_on_a_wake_a_timeout_and_close():
    waiters, versions = Waiters(max_waiting=100), {}
    server = start_server(make_app(waiters, versions), threads=1)
    address = server.addresses[0]
    try:
        polls = [Poll(address, f"/{key}?wait={LONG_S}", then="/ping") for key in ("a", "b", "c")]
        for poll in polls:
            poll.start()
        assert wait_until(lambda: waiters.waiting == 3, PROMPTLY_S), waiters.waiting
        # Three long-polls wait and the one worker is free: a plain request is answered.
        conn = http.client.HTTPConnection(address.host, address.port, timeout=PROMPTLY_S)
        conn.request("GET", "/ping")
        assert conn.getresponse().read() == b"pong"
        conn.close()
        # Parked requests count as in progress (the drain waits for them). The plain request's
        # own count may outlive its answer by a moment: its worker finishes after the last byte.
        assert wait_until(lambda: server.in_flight() == 3, PROMPTLY_S), server.in_flight()

        versions["a"] = 1
        waiters.notify(["a"])
        polls[0].join(PROMPTLY_S)
        # answered with the new version; the same connection then serves a plain request
        assert polls[0].answers == [(200, b"1"), (200, b"pong")]
        assert waiters.waiting == 2 and all(poll.is_alive() for poll in polls[1:])

        # A wake that changes nothing: re-read, parked again (not answered).
        waiters.notify(["b"])
        assert not wait_until(lambda: polls[1].answers, 0.5)

        # A timeout with no wake (the alarm thread resumes it).
        short = Poll(address, "/d?wait=0.3")
        short.start()
        short.join(PROMPTLY_S)
        assert short.answers == [(200, b"0")]

        # The stop sequence: close() wakes every waiter, each answers its current state.
        waiters.close()
        for poll in polls[1:]:
            poll.join(PROMPTLY_S)
            assert poll.answers == [(200, b"0"), (200, b"pong")]
        assert waiters.waiting == 0
    finally:
        assert server.drain(time.monotonic() + 5)


def test_a_client_gone_while_parked_releases_its_waiter_at_its_timeout():
    waiters = Waiters(max_waiting=10)
    server = start_server(make_app(waiters, {}))
    address = server.addresses[0]
    try:
        sock = socket.create_connection((address.host, address.port))
        sock.sendall(b"GET /gone?wait=0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_until(lambda: waiters.waiting == 1, PROMPTLY_S)
        sock.close()
        assert wait_until(lambda: waiters.waiting == 0, PROMPTLY_S)
        # the worker is fine: the next request is answered
        conn = http.client.HTTPConnection(address.host, address.port, timeout=PROMPTLY_S)
        conn.request("GET", "/ping")
        assert conn.getresponse().read() == b"pong"
        conn.close()
    finally:
        assert server.drain(time.monotonic() + 5)


@pytest.mark.parametrize("goodbye", ["close", "reset"])
def test_a_client_gone_while_parked_releases_its_place_long_before_its_timeout(goodbye):
    # A client that goes away (closes, or resets) no longer holds its place under the cap for
    # the rest of its wait: the loop notices the hang-up on the parked socket.
    waiters = Waiters(max_waiting=60)
    server = start_server(make_app(waiters, {}), threads=2)
    address = server.addresses[0]
    try:
        socks = []
        for n in range(50):
            sock = socket.create_connection((address.host, address.port))
            sock.sendall(f"GET /gone{n}?wait=60 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            socks.append(sock)
        # One that stays, with a request pipelined behind its long-poll: data to read on a
        # parked socket is no hang-up.
        kept = socket.create_connection((address.host, address.port))
        kept.sendall(b"GET /kept?wait=60 HTTP/1.1\r\nHost: x\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_until(lambda: waiters.waiting == 51, PROMPTLY_S), waiters.waiting
        for sock in socks:
            if goodbye == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        started = time.monotonic()
        assert wait_until(lambda: waiters.waiting == 1, PROMPTLY_S), waiters.waiting
        print(f"50 clients gone ({goodbye}): places released in {time.monotonic() - started:.2f} s")
        assert server.in_flight() == 2  # the kept one, still parked, and the request behind it
        conn = http.client.HTTPConnection(address.host, address.port, timeout=PROMPTLY_S)
        conn.request("GET", "/ping")
        assert conn.getresponse().read() == b"pong"
        conn.close()
        waiters.close()  # the stop: the kept long-poll answers, then its pipelined request
        kept.settimeout(PROMPTLY_S)
        received = b""
        while not received.endswith(b"pong"):  # both answers, in order, the last body whole
            chunk = kept.recv(4096)
            assert chunk, received
            received += chunk
        assert received.count(b"HTTP/1.1 200") == 2 and b"\r\n\r\n0HTTP/1.1 200" in received
        kept.close()
    finally:
        assert server.drain(time.monotonic() + 5)


def test_a_client_that_half_closes_while_parked_is_answered_at_once():
    # Done sending, still reading (shutdown(SHUT_WR): a legal HTTP client, or a proxy passing
    # its client's FIN on): it gets its answer, with what is current, not a closed connection,
    # and well before its wait would end.
    waiters, versions = Waiters(max_waiting=10), {"half": 7}
    server = start_server(make_app(waiters, versions))
    address = server.addresses[0]
    try:
        sock = socket.create_connection((address.host, address.port))
        sock.sendall(b"GET /half?wait=60 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_until(lambda: waiters.waiting == 1, PROMPTLY_S)
        started = time.monotonic()
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(PROMPTLY_S)
        received = b""
        while not received.endswith(b"\r\n\r\n7"):
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
        assert received.startswith(b"HTTP/1.1 200") and time.monotonic() - started < 3
        assert wait_until(lambda: waiters.waiting == 0, PROMPTLY_S)
        sock.close()
    finally:
        assert server.drain(time.monotonic() + 5)


def test_a_drain_cut_releases_parked_waiters():
    waiters = Waiters(max_waiting=10)
    server = start_server(make_app(waiters, {}))
    address = server.addresses[0]
    sock = socket.create_connection((address.host, address.port))
    sock.sendall(f"GET /cut?wait={LONG_S} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert wait_until(lambda: waiters.waiting == 1, PROMPTLY_S)
    # nobody closes the waiters: the drain waits for the parked request, then cuts it
    assert server.drain(time.monotonic() + 0.5) is False
    sock.close()


# --- the real mmserver command ----------------------------------------------------------------

THREADS = 4
HELD = 40  # ten times the public workers
# A window of 1 that never widens, tickets 10 MMR apart: nothing matches.
CONFIG = """
[modes.duel]
team_size = 1
teams = 2
mmr_window = 1
mmr_window_growth_per_s = 0
mmr_window_max = 1
"""


def test_a_replica_holds_more_long_polls_than_workers_serves_others_caps_and_answers_all_at_stop(
        tmp_path, redis_server):
    config = tmp_path / "mm.toml"
    config.write_text(CONFIG)
    server = MMServer(tmp_path, redis_url=redis_server.url, env={
        "MMSERVER_CONFIG": str(config), "MMSERVER_HTTP_THREADS": str(THREADS),
        "MMSERVER_MAX_LONGPOLLS": str(HELD)}).start().wait_ready()
    answers: list = []

    def hold(ticket: dict) -> None:
        answers.append(request(f"{server.url}/v1/tickets/{ticket['ticket_id']}?wait={LONG_S}&version={ticket['version']}",
                               token=ticket["token"], timeout=LONG_S + 10))

    try:
        tickets = [server.post("/v1/tickets", {"player_id": f"p{n}", "mode": "duel", "mmr": 10 * n}).json()
                   for n in range(HELD + 1)]
        threads = [threading.Thread(target=hold, args=(ticket,), daemon=True) for ticket in tickets[:HELD]]
        for thread in threads:
            thread.start()
        assert wait_until(lambda: server.admin("/admin/status").json()["workers"]["http"]["long_polls"] == HELD, 20)
        # every worker is free for the rest: creations and reads are answered
        assert server.post("/v1/tickets", {"player_id": "other", "mode": "duel", "mmr": 5_000}).status == 201
        # beyond the cap: answered at once, with Retry-After
        extra = tickets[HELD]
        busy = request(f"{server.url}/v1/tickets/{extra['ticket_id']}?wait={LONG_S}&version={extra['version']}",
                       token=extra["token"], timeout=LONG_S)
        assert busy.status == 200 and busy.headers.get("Retry-After") == "2"
        # a change answers its own long-poll only
        first = tickets[0]
        assert request(f"{server.url}/v1/tickets/{first['ticket_id']}", method="DELETE", token=first["token"]).status == 200
        assert wait_until(lambda: len(answers) == 1, 10)
        assert answers[0].json()["status"] == "cancelled"
        # the stop answers every other long-poll (200, current state) and exits 0
        server.signal(signal.SIGTERM)
        for thread in threads:
            thread.join(20)
        assert len(answers) == HELD
        assert {answer.status for answer in answers} == {200}
        assert server.wait(20) == 0
    finally:
        server.kill()
