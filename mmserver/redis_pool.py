"""The lean command path of the store's Redis connections (plain TCP and unix URLs).

The command path of `connect`'s clients (plain TCP and unix URLs) is leaner than redis-py's
default, because every system call that releases the GIL costs a thread switch when the HTTP
workers compete for it (docs/PERFORMANCE.md, ticket creation):
- `LeanConnectionPool` polls a pooled connection's socket before handing it out (to catch a
  connection the server closed) only when it sat unused for a while, not before every command.
- The socket timeout is the kernel's (SO_RCVTIMEO/SO_SNDTIMEO on a blocking socket) rather than
  Python's, which polls the socket before every send and receive. A read that times out raises
  a ConnectionError instead of a TimeoutError; both mean "Redis is unavailable" to the store.
TLS and Sentinel URLs keep redis-py's own pool and connections.
"""
from __future__ import annotations

import math
import socket
import struct
import time
from typing import Any

import redis

from mmserver.redis_replies import ReplyGuard, ReplyGuardPool


class LeanConnectionPool(ReplyGuardPool, redis.ConnectionPool):
    """redis-py's pool, but a connection handed out is checked for a closed socket (a poll)
    only when it sat unused for more than `idle_check_s`, not at every command; and no
    observability hooks at checkout (redis-py's are off unless configured).

    redis-py's client does not retry, so the check is what keeps a connection the server
    closed (a Redis restart, CLIENT KILL, the server's idle `timeout`) from failing a request.
    A connection used within the last `idle_check_s` can only be stale if Redis went away and
    came back within that time while nothing used it: under load connections are reused every
    few milliseconds and skip the poll (a GIL release and a thread switch each), while a quiet
    replica checks as before.

    It copies redis-py's `get_connection` and `ensure_connection` (private behaviour, not a
    documented extension point), which is why redis-py is pinned exactly. Kept for what it
    measured against redis-py's own pool (bench/bench_pool.py, docs/PERFORMANCE.md): +11% store
    creations/s from 8 threads, +8% from one, in the same interleaved run.
    """

    idle_check_s = 0.1

    # What this class reproduces from redis-py (setup.py pins the exact version): the sha256 of
    # the source of each method it copies. tests/unit/test_redis_client_lean.py fails when an
    # upgrade changes one, so the copy is reviewed instead of silently diverging.
    COPIED_FROM = {
        "ConnectionPool.get_connection": "3e8ab15a9fda12f44ec855736951ffb55e5a007d70ea60e733374d6d457d5488",
        "ConnectionPool.ensure_connection": "1811110ff9971beea6ad024565247ee802e8acce1e473cf4166f0762b826ff59",
    }

    def get_connection(self, *args: Any, **kwargs: Any) -> redis.Connection:
        self._checkpid()
        with self._lock:
            try:
                connection = self._available_connections.pop()
            except IndexError:
                connection = self.make_connection()
            self._in_use_connections.add(connection)
        now = time.monotonic()
        try:
            connection.connect()  # returns at once when connected
            if now - getattr(connection, "mm_checked_out_at", -math.inf) > self.idle_check_s:
                self._check(connection)
            connection.mm_checked_out_at = now
        except BaseException:
            self.release(connection)
            raise
        return connection

    def _check(self, connection: redis.Connection) -> None:
        # redis-py's own check (ConnectionPool.get_connection): data waiting on an idle
        # connection, or EOF, means it cannot be used as it is. Unlike redis-py, data counts
        # even when maintenance notifications are on: redis-py 8's default ("auto", with
        # RESP3) reports them on for every server, which would make the check blind to a
        # reply left unread (the next command would read it as its own). A push notification
        # waiting on an idle connection only costs a reconnect here.
        dirty_matters = self.cache is None
        try:
            if connection.can_read() and dirty_matters:
                raise redis.ConnectionError("Connection has data")
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            connection.disconnect()
            connection.connect()
            if connection.can_read() and dirty_matters:
                raise redis.ConnectionError("Connection not ready")


def _kernel_timeouts(sock: socket.socket, timeout: float | None) -> socket.socket:
    """Make `sock` blocking, with `timeout` enforced by the kernel on every send and receive."""
    sock.settimeout(None)
    if timeout is not None:
        # A zero interval would mean "no timeout" to the kernel: one microsecond at least.
        seconds, micros = divmod(max(1, round(timeout * 1e6)), 1_000_000)
        interval = struct.pack("ll", seconds, micros)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, interval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, interval)
    return sock


class KernelTimeoutConnection(ReplyGuard, redis.Connection):
    """A TCP connection whose `io_timeout` is the kernel's: Python's socket timeout would poll
    before every send and receive (a GIL release each). `socket_timeout` stays None."""

    def __init__(self, *, io_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.io_timeout = io_timeout

    def _connect(self) -> socket.socket:
        return _kernel_timeouts(super()._connect(), self.io_timeout)


class KernelTimeoutUnixConnection(ReplyGuard, redis.UnixDomainSocketConnection):
    """KernelTimeoutConnection over a unix socket (the embedded Redis)."""

    def __init__(self, *, io_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.io_timeout = io_timeout

    def _connect(self) -> socket.socket:
        return _kernel_timeouts(super()._connect(), self.io_timeout)


