"""The one Redis URL setting (`MMSERVER_REDIS_URL`): its forms, the Sentinel form's parser
(urllib cannot split it), and redaction of passwords for messages and logs.

Accepted URL forms:

- ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://...`` (TLS): redis-py's own
  ``Redis.from_url``, query options included. The path is empty, ``/`` or ``/N`` (config/values.py
  refuses any other: redis-py would read ``/3x`` as database 0). For TLS: ``?ssl_ca_certs=/path/ca.pem`` (the CA
  that signed the server's certificate; the system store when absent), ``ssl_ca_path``,
  ``ssl_certfile`` and ``ssl_keyfile`` (client certificate), ``ssl_check_hostname=false``,
  ``ssl_cert_reqs=none`` (no verification: testing only). Unknown options, bad values (a
  timeout that is not a number of seconds above 0, a ``client_name`` Redis would refuse, a
  negative db) and missing files are refused when the client is built at start (exit 2), not at
  the first command.
- ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``: a local socket (what the embedded
  Redis uses).
- ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]``: Redis
  Sentinel. The host:port pairs are the sentinels (26379 when a port is left out); the client
  asks them for the current master of `service_name` and follows failovers. The password (and
  user) authenticate to the master, not to the sentinels; percent-encode special characters.
  Example: ``redis+sentinel://s3cret@10.0.0.1:26379,10.0.0.2:26379/mymaster/0``.
"""
from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from mmserver.decimal_text import parse_decimal

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
        db = parse_decimal(parts[1], 9)
        if db is None:
            raise RedisURLError(f"the database must be a number in {redact(url)!r}")
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
    port = parse_decimal(port_text, 5)
    if port is None:
        raise RedisURLError(f"bad port in sentinel address {part!r}")
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


