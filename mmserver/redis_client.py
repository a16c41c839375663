"""Redis clients built from the one URL setting (`MMSERVER_REDIS_URL`).

Accepted URL forms:

- ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://...`` (TLS): redis-py's own
  ``Redis.from_url``, query options included. For TLS: ``?ssl_ca_certs=/path/ca.pem`` (the CA
  that signed the server's certificate; the system store when absent), ``ssl_ca_path``,
  ``ssl_certfile`` and ``ssl_keyfile`` (client certificate), ``ssl_check_hostname=false``,
  ``ssl_cert_reqs=none`` (no verification: testing only). Unknown options, bad values and
  missing files are refused when the client is built, not at the first command.
- ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``: a local socket (what the embedded
  Redis uses).
- ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]``: Redis
  Sentinel. The host:port pairs are the sentinels (26379 when a port is left out); the client
  asks them for the current master of `service_name` and follows failovers. The password (and
  user) authenticate to the master, not to the sentinels; percent-encode special characters.
  Example: ``redis+sentinel://s3cret@10.0.0.1:26379,10.0.0.2:26379/mymaster/0``.

Two kinds of clients: `connect` for ordinary commands (redis-py's default retry hides blips of a
few milliseconds), and `connect_subscriber` for the pub/sub thread, which owns its reconnect
loop: redis-py's retries sleep in `time.sleep`, which a shutdown cannot interrupt.

The command path of `connect`'s clients (plain TCP and unix URLs) is leaner than redis-py's
default, because every system call that releases the GIL costs a thread switch when the HTTP
workers compete for it (docs/PERFORMANCE.md, ticket creation):
- `LeanConnectionPool` polls a pooled connection's socket before handing it out (to catch a
  connection the server closed) only when it sat unused for a while, not before every command.
- The socket timeout is the kernel's (SO_RCVTIMEO/SO_SNDTIMEO on a blocking socket) rather than
  Python's, which polls the socket before every send and receive. A read that times out raises
  a ConnectionError instead of a TimeoutError; both mean "Redis is unavailable" to the store.
TLS and Sentinel URLs keep redis-py's own pool and connections.

Every client from `connect` and `connect_subscriber`, whatever the URL, guards against stale
replies (`ReplyGuard`): a connection counts the replies it owes (one per command sent, read off
as they come) and a connection released while it still owes any is closed instead of reused. A
call interrupted between its send and its read (an asynchronous exception, a signal handler's
SystemExit) would otherwise leave its reply for the next caller of that connection to read as
its own: redis-py 8's pools do not look for unread data at checkout under its defaults (RESP3,
maintenance notifications "auto"), and a reply still on its way cannot be seen by any look.
One counter covers every path (plain commands, pipelines, MULTI/EXEC, the scripts' EVALSHA).
"""
from __future__ import annotations

import functools
import logging
import math
import os
import socket
import struct
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

logger = logging.getLogger(__name__)

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
# TLS options that name files: checked at start, not at the first connection.
SSL_FILE_OPTIONS = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile")


class RedisURLError(ValueError):
    """A Redis URL that cannot be used; the message is one line for an operator."""


@dataclass(frozen=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_sentinel_url(url: str) -> SentinelURL:
    """Split a ``redis+sentinel://`` URL. urllib cannot: the netloc holds several host:port."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme != SENTINEL_SCHEME:
        raise RedisURLError(f"not a {SENTINEL_SCHEME}:// URL: {redact(url)!r}")
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    netloc, _, path = rest.partition("/")
    username = password = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        if ":" in userinfo:
            user, _, secret = userinfo.partition(":")
            username = urllib.parse.unquote(user) or None
            password = urllib.parse.unquote(secret)
        else:
            # The documented short form: the one field before '@' is the password.
            password = urllib.parse.unquote(userinfo)
        password = password or None
    sentinels = tuple(_host_port(part, url) for part in netloc.split(","))
    parts = path.rstrip("/").split("/") if path.rstrip("/") else []
    if not parts or not parts[0]:
        raise RedisURLError(f"no service name in the sentinel URL (…/service_name[/db]): {redact(url)!r}")
    if len(parts) > 2:
        raise RedisURLError(f"expected …/service_name[/db] in the sentinel URL: {redact(url)!r}")
    service_name = urllib.parse.unquote(parts[0])
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise RedisURLError(f"the database must be a number in {redact(url)!r}")
        db = int(parts[1])
    return SentinelURL(sentinels, service_name, db, username, password)


def _host_port(part: str, url: str) -> tuple[str, int]:
    if not part:
        raise RedisURLError(f"empty sentinel address in {redact(url)!r}")
    if part.startswith("["):  # [ipv6]:port
        host, sep, tail = part[1:].partition("]")
        if not sep:
            raise RedisURLError(f"unclosed '[' in {redact(url)!r}")
        port_text = tail[1:] if tail.startswith(":") else ""
        if tail and not tail.startswith(":"):
            raise RedisURLError(f"bad sentinel address {part!r}")
    else:
        host, _, port_text = part.partition(":")
    if not host:
        raise RedisURLError(f"no host in sentinel address {part!r}")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    try:
        port = int(port_text)
    except ValueError:
        raise RedisURLError(f"bad port in sentinel address {part!r}") from None
    if not 0 < port <= 65535:
        raise RedisURLError(f"port out of range in sentinel address {part!r}")
    return host, port


def redact(url: str) -> str:
    """The URL with its password masked: safe for error messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user = userinfo.partition(":")[0] if ":" in userinfo else ""
        netloc = f"{user}:***@{hosts}" if user else f"***@{hosts}"
    path, question, query = path.partition("?")
    if query:
        # redis-py also reads ?password= and ?ssl_password= from the query.
        query = "&".join(
            f"{name}=***" if "password" in name.lower() else f"{name}{eq}{value}"
            for name, eq, value in (item.partition("=") for item in query.split("&"))
        )
    return f"{scheme}{sep}{netloc}{slash}{path}{question}{query}"


class ReplyGuard:
    """Connection mixin: `replies_owed` counts the replies sent for and not yet read.

    Incremented before a command goes out (`send_command`, or `pack_commands` for a pipeline's
    batch, which redis-py always sends right after packing), decremented for each reply read
    whole (an error reply included), reset when the socket is closed. redis-py closes the
    socket itself when a send or a read fails with an exception it sees; what it cannot see is
    an exception raised between the two, or between two replies of a pipeline. `ReplyGuardPool`
    closes such a connection when it comes back.

    Push messages (pub/sub) read while nothing is owed leave the count at 0; a pub/sub
    connection is closed by redis-py before it goes back to the pool anyway.
    """

    replies_owed = 0

    def send_command(self, *args: Any, **kwargs: Any) -> None:
        self.replies_owed += 1
        super().send_command(*args, **kwargs)

    def pack_commands(self, commands: Any) -> list:
        commands = list(commands)
        packed = super().pack_commands(commands)
        self.replies_owed += len(commands)
        return packed

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = super().read_response(*args, **kwargs)
        except redis.ResponseError:  # an error reply, read whole
            if self.replies_owed:
                self.replies_owed -= 1
            raise
        if self.replies_owed:
            self.replies_owed -= 1
        return response

    def disconnect(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().disconnect(*args, **kwargs)
        finally:
            self.replies_owed = 0


class ReplyGuardPool:
    """Pool mixin: a connection released while it owes replies is closed (the pool reconnects
    it at its next checkout) rather than handed to the next caller."""

    def release(self, connection: Any) -> None:
        if getattr(connection, "replies_owed", 0):
            logger.debug("closing a pooled Redis connection released with %d replies unread",
                         connection.replies_owed)
            connection.disconnect()
        super().release(connection)


class GuardedConnectionPool(ReplyGuardPool, redis.ConnectionPool):
    """redis-py's pool with the stale-reply guard (TLS URLs, the subscriber, `lean=False`)."""


class GuardedSentinelConnectionPool(ReplyGuardPool, SentinelConnectionPool):
    """redis-py's Sentinel pool with the stale-reply guard."""


@functools.cache
def guarded(connection_class: type) -> type:
    """`connection_class` with `ReplyGuard` mixed in (itself if it has it already)."""
    if issubclass(connection_class, ReplyGuard):
        return connection_class
    return type(f"Guarded{connection_class.__name__}", (ReplyGuard, connection_class), {})


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


def _lean_client(url: str, **kwargs: Any) -> redis.Redis:
    pool = LeanConnectionPool.from_url(url, **kwargs)
    options = pool.connection_kwargs
    lean_class = {redis.Connection: KernelTimeoutConnection,
                  redis.UnixDomainSocketConnection: KernelTimeoutUnixConnection}.get(pool.connection_class)
    if lean_class is not None:  # another class chosen by an option keeps its own timeouts
        # The URL's own ?socket_timeout= (applied by from_url) wins over the argument, as before.
        options["io_timeout"] = options.get("socket_timeout")
        options["socket_timeout"] = None
        pool.connection_class = lean_class
    else:
        pool.connection_class = guarded(pool.connection_class)
    return redis.Redis.from_pool(pool)


def _guarded_client(url: str, **kwargs: Any) -> redis.Redis:
    pool = GuardedConnectionPool.from_url(url, **kwargs)
    pool.connection_class = guarded(pool.connection_class)
    return redis.Redis.from_pool(pool)


def connect(url: str, *, decode_responses: bool = True, socket_timeout: float = 5.0,
            lean: bool = True, **kwargs: Any) -> redis.Redis:
    """A client for `url` (any of the forms in the module docstring). Connections open lazily:
    nothing touches the network before the first command. Extra keyword arguments go to the
    redis-py connection (e.g. `socket_connect_timeout`, `client_name`, `retry`). `lean`: the
    leaner command path of the module docstring for redis:// and unix:// URLs."""
    kwargs.setdefault("socket_connect_timeout", socket_timeout)
    scheme = url.partition("://")[0]
    if scheme == SENTINEL_SCHEME:
        parsed = parse_sentinel_url(url)
        # The sentinels get only the socket options (redis-py's own default for
        # sentinel_kwargs): the master's password is not theirs.
        sentinel = Sentinel(
            list(parsed.sentinels),
            decode_responses=decode_responses,
            socket_timeout=socket_timeout,
            **kwargs,
        )
        client = sentinel.master_for(
            parsed.service_name,
            connection_pool_class=GuardedSentinelConnectionPool,
            db=parsed.db,
            username=parsed.username,
            password=parsed.password,
        )
        pool = client.connection_pool
        pool.connection_class = guarded(pool.connection_class)
        return client
    if scheme not in ("redis", "rediss", "unix"):
        raise RedisURLError(
            f"unsupported Redis URL scheme {scheme!r}; use redis, rediss, unix or {SENTINEL_SCHEME}"
        )
    try:
        if lean and scheme in ("redis", "unix"):
            client = _lean_client(url, decode_responses=decode_responses, socket_timeout=socket_timeout,
                                  **kwargs)
        else:
            client = _guarded_client(url, decode_responses=decode_responses,
                                     socket_timeout=socket_timeout, **kwargs)
    except ValueError as exc:
        raise RedisURLError(f"bad Redis URL {redact(url)!r}: {exc}") from None
    _check_connection_options(client.connection_pool, url)
    return client


def _check_connection_options(pool: redis.ConnectionPool, url: str) -> None:
    """Refuse, at start, URL options that would only fail at the first connection.

    redis-py passes every query option it does not know through to the connection class, which
    is built lazily: a typo (``?ssl_ca_cert=``) would surface as a TypeError inside the first
    command (an HTTP 500, a dead subscriber thread), and a missing CA file as a connection error
    retried until the reconnect budget runs out. Building one connection object touches no
    network and checks the names and values; the files are checked here.
    """
    options = pool.connection_kwargs
    for name in SSL_FILE_OPTIONS:
        path = options.get(name)
        if path is not None and not os.path.exists(path):
            raise RedisURLError(f"{name} in the Redis URL names a missing file or directory: {path}")
    try:
        pool.connection_class(**options)
    except TypeError as exc:
        raise RedisURLError(f"bad option in the Redis URL {redact(url)!r}: {exc}") from None
    except (ValueError, redis.RedisError) as exc:
        raise RedisURLError(f"bad option value in the Redis URL {redact(url)!r}: {exc}") from None


def connect_subscriber(url: str, *, health_check_interval: float, socket_timeout: float = 5.0,
                       **kwargs: Any) -> redis.Redis:
    """A client for the pub/sub thread: no hidden retries (the subscriber retries with its own
    backoff and can be interrupted by a shutdown), and redis-py's health checks on. redis-py's
    own pool and socket timeouts: the subscriber reads with short timeouts of its own, and a
    timed-out read there is not a lost connection (see subscriber.py)."""
    return connect(
        url,
        socket_timeout=socket_timeout,
        lean=False,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=health_check_interval,
        **kwargs,
    )
