"""HttpServer against real sockets and threads: binding, two apps, liveness, in-flight count."""
from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest

from mmserver.config import Address
from mmserver.http.server import HttpServer, Listener, ListenError
from tests.waiting import wait_until


def text_app(body: bytes):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def get(address: Address, path: str = "/") -> tuple[int, bytes, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection(address.host, address.port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(), response
    finally:
        conn.close()


@pytest.fixture
def servers():
    """Every HttpServer a test makes is drained at the end, even when the test fails."""
    made: list[HttpServer] = []

    def make(listeners, **kw) -> HttpServer:
        kw.setdefault("threads", 4)
        kw.setdefault("max_request_body_size", 1024)
        server = HttpServer(listeners, **kw)
        made.append(server)
        return server

    yield make
    for server in made:
        server.drain(time.monotonic() + 2)


def local(port: int = 0) -> Address:
    return Address("127.0.0.1", port)


def test_bind_port_zero_reports_the_real_addresses_in_listener_order(servers):
    server = servers([(local(), text_app(b"public")), (local(), text_app(b"admin"))])
    server.bind()
    public, admin = server.addresses
    assert public.host == admin.host == "127.0.0.1"
    assert public.port != 0 and admin.port != 0 and public.port != admin.port
    # bound and listening right after bind(): the kernel completes the handshake
    with socket.create_connection((public.host, public.port), timeout=2):
        pass


def test_two_listeners_serve_two_different_apps(servers):
    server = servers([(local(), text_app(b"public")), (local(), text_app(b"admin"))], ident="mmtest")
    server.bind()
    server.start()
    public, admin = server.addresses
    status, body, response = get(public)
    assert (status, body) == (200, b"public")
    assert response.getheader("Server") == "mmtest"
    assert get(admin)[:2] == (200, b"admin")
    # one loop thread for both listeners
    assert [t.name for t in threading.enumerate()].count("http-loop") == 1


def test_busy_port_raises_oserror_at_bind_and_releases_the_other_sockets(servers):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first_port = probe.getsockname()[1]
        server = servers([(local(first_port), text_app(b"a")), (local(taken), text_app(b"b"))])
        with pytest.raises(ListenError) as refused:
            server.bind()
    # which listener, where, and why: what the start-up refusal names
    assert (refused.value.index, refused.value.address) == (1, local(taken))
    assert refused.value.strerror == "Address already in use"
    # the first listener, bound before the failure, was closed again
    with socket.socket() as again:
        again.bind(("127.0.0.1", first_port))


def test_request_body_over_the_limit_is_refused(servers):
    server = servers([(local(), text_app(b"ok"))], max_request_body_size=16)
    server.start()  # binds when bind() was not called
    address = server.addresses[0]
    conn = http.client.HTTPConnection(address.host, address.port, timeout=5)
    conn.request("POST", "/", body=b"x" * 100)
    assert conn.getresponse().status == 413
    conn.close()


def test_is_alive_true_while_running_false_after_drain(servers):
    server = servers([(local(), text_app(b"ok"))])
    server.bind()
    assert not server.is_alive()  # not started
    server.start()
    assert server.is_alive()
    time.sleep(0.6)  # idle: the loop still completes passes
    assert server.is_alive()
    assert server.drain(time.monotonic() + 5) is True
    assert not server.is_alive()
    assert "http-loop" not in [t.name for t in threading.enumerate()]


def test_is_alive_false_when_the_loop_thread_stalls(servers):
    server = servers([(local(), text_app(b"ok"))], loop_stall_timeout=0.3)
    server.start()
    release = threading.Event()
    assert server.is_alive()
    # block the loop thread itself, as a stuck loop would be (test seam: the trigger queue)
    assert server._pull_trigger(lambda: release.wait(5))
    try:
        assert wait_until(lambda: not server.is_alive(), 10)
        assert server._thread.is_alive()  # the thread runs: only its progress stopped
    finally:
        release.set()
    assert wait_until(server.is_alive, 10)


def test_in_flight_counts_running_requests(servers):
    entered, release = threading.Event(), threading.Event()

    def slow(environ, start_response):
        entered.set()
        release.wait(5)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = servers([(local(), slow)])
    server.start()
    assert server.in_flight() == 0
    result: list = []
    client = threading.Thread(target=lambda: result.append(get(server.addresses[0])[:2]))
    client.start()
    assert entered.wait(5)
    assert server.in_flight() == 1
    release.set()
    client.join(5)
    assert result == [(200, b"ok")]
    # The worker forgets the request just after the answer's last byte leaves: the client may
    # read it first.
    assert wait_until(lambda: server.in_flight() == 0, 5)


def test_drain_of_a_server_never_started_closes_its_sockets(servers):
    server = servers([(local(), text_app(b"ok"))])
    server.bind()
    port = server.addresses[0].port
    assert server.drain(time.monotonic() + 1) is True
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_a_listener_with_its_own_pool_answers_while_every_shared_worker_is_busy(servers):
    """The shared pool full (and requests queued behind it) does not delay the other listener."""
    threads = 4
    entered, release = threading.Semaphore(0), threading.Event()

    def stuck(environ, start_response):
        entered.release()
        release.wait(30)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = servers([Listener(local(), stuck), Listener(local(), text_app(b"probe"), threads=2, name="admin")],
                     threads=threads)
    server.start()
    public, admin = server.addresses
    clients = [threading.Thread(target=get, args=(public,), daemon=True) for _ in range(threads * 2)]
    try:
        for client in clients:
            client.start()
        for _ in range(threads):
            assert entered.acquire(timeout=10), "a shared worker never took its request"
        assert wait_until(lambda: server.in_flight(0) == threads * 2, 10), server.in_flight(0)
        started = time.monotonic()
        for _ in range(5):
            assert get(admin)[:2] == (200, b"probe")
        elapsed = time.monotonic() - started
        # the own pool's answers come at once; the bound only guards against waiting for a
        # shared worker, which would take the 30 s of `release.wait`
        assert elapsed < 5, elapsed
        names = [t.name for t in threading.enumerate()]
        assert sorted(n for n in names if n.startswith("waitress-admin-")) == ["waitress-admin-0", "waitress-admin-1"]
    finally:
        release.set()
    for client in clients:
        client.join(10)
    # the drain stops both pools
    assert server.drain(time.monotonic() + 5) is True
    assert wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("waitress-")], 5)


def test_a_listener_without_its_own_pool_waits_for_the_shared_workers(servers):
    """The control experiment of the test above: the same load delays a listener sharing the pool."""
    entered, release = threading.Semaphore(0), threading.Event()

    def stuck(environ, start_response):
        entered.release()
        release.wait(30)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = servers([(local(), stuck), (local(), text_app(b"probe"))], threads=4)
    server.start()
    public, admin = server.addresses
    clients = [threading.Thread(target=get, args=(public,), daemon=True) for _ in range(4)]
    try:
        for client in clients:
            client.start()
        for _ in range(4):
            assert entered.acquire(timeout=10)
        conn = http.client.HTTPConnection(admin.host, admin.port, timeout=1)
        conn.request("GET", "/")
        with pytest.raises(socket.timeout):
            conn.getresponse()
        conn.close()
    finally:
        release.set()
    for client in clients:
        client.join(10)


def test_a_pool_of_its_own_needs_a_name_and_threads():
    with pytest.raises(ValueError):
        HttpServer([Listener(local(), text_app(b"x"), threads=2)], threads=4, max_request_body_size=16)
    with pytest.raises(ValueError):
        HttpServer([Listener(local(), text_app(b"x"), threads=0, name="admin")], threads=4,
                   max_request_body_size=16)
