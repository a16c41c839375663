"""Redis clients built from the one URL setting (`MMSERVER_REDIS_URL`, forms in redis_url.py).

Two kinds of clients: `connect` for ordinary commands (redis-py's default retry hides blips of a
few milliseconds), and `connect_subscriber` for the pub/sub thread, which owns its reconnect
loop: redis-py's retries sleep in `time.sleep`, which a shutdown cannot interrupt.

Plain TCP and unix URLs get the lean command path of redis_pool.py; TLS and Sentinel URLs keep
redis-py's own pool and connections. Every client, whatever the URL, carries the stale-reply
guard of redis_replies.py.
"""
from __future__ import annotations

import math
import os
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from mmserver.config.values import DURATION_BOUND, MAX_DURATION_S
from mmserver.redis_pool import KernelTimeoutConnection, KernelTimeoutUnixConnection, LeanConnectionPool
from mmserver.redis_replies import GuardedConnectionPool, GuardedSentinelConnectionPool, guarded
from mmserver.redis_url import SENTINEL_SCHEME, SSL_FILE_OPTIONS, RedisURLError, parse_sentinel_url, redact


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
    """A client for `url` (any of the forms in redis_url.py). Connections open lazily: nothing
    touches the network before the first command. Extra keyword arguments go to the redis-py
    connection (e.g. `socket_connect_timeout`, `client_name`, `retry`). `lean`: the leaner
    command path of redis_pool.py for redis:// and unix:// URLs."""
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
    _check_option_values(options)
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


# Timeouts (io_timeout: the lean connection's name for socket_timeout). redis-py takes any float
# from the URL; a negative one or NaN fails only inside the first connect, or in the
# subscriber thread, 0 makes the socket non-blocking, and settimeout overflows far beyond the
# bound of every duration setting.
_TIMEOUT_OPTIONS = ("socket_timeout", "socket_connect_timeout", "io_timeout")


def _check_option_values(options: dict[str, Any]) -> None:
    for name in _TIMEOUT_OPTIONS:
        value = options.get(name)
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)
                                      and 0 < value <= MAX_DURATION_S):
            shown = "socket_timeout" if name == "io_timeout" else name
            raise RedisURLError(f"{shown} in the Redis URL must be a number of seconds above 0 and at most "
                                f"{MAX_DURATION_S:,} ({DURATION_BOUND}), got {value!r}")
    name = options.get("client_name")
    # CLIENT SETNAME refuses spaces, newlines and anything outside '!'..'~', on every connect.
    if name is not None and not all("!" <= char <= "~" for char in str(name)):
        raise RedisURLError(f"client_name in the Redis URL must be printable ASCII without spaces, got {name!r}")
    if options.get("db", 0) < 0:
        raise RedisURLError(f"the database in the Redis URL must be 0 or more, got {options['db']}")


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
