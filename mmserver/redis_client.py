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
"""
from __future__ import annotations

import logging
import os
import urllib.parse
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

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


def connect(url: str, *, decode_responses: bool = True, socket_timeout: float = 5.0,
            **kwargs: Any) -> redis.Redis:
    """A client for `url` (any of the forms in the module docstring). Connections open lazily:
    nothing touches the network before the first command. Extra keyword arguments go to the
    redis-py connection (e.g. `socket_connect_timeout`, `client_name`, `retry`)."""
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
        return sentinel.master_for(
            parsed.service_name,
            db=parsed.db,
            username=parsed.username,
            password=parsed.password,
        )
    if scheme not in ("redis", "rediss", "unix"):
        raise RedisURLError(
            f"unsupported Redis URL scheme {scheme!r}; use redis, rediss, unix or {SENTINEL_SCHEME}"
        )
    try:
        client = redis.Redis.from_url(url, decode_responses=decode_responses,
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
    backoff and can be interrupted by a shutdown), and redis-py's health checks on."""
    return connect(
        url,
        socket_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=health_check_interval,
        **kwargs,
    )
