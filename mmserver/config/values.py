"""The rules a configuration value must meet, one check and one wording each.

Flags and environment variables arrive as text and are parsed first (the converters of
settings.py's SETTINGS table); TOML values arrive typed and are type-checked first (`toml_*`,
used by file.py and modes.py: a TOML string "5" is not a number). Both then meet the same rule
(`_at_least`, `_at_most`, `_non_negative`, `_greater_than_zero`, `_non_empty_text`). Durations
and counts have upper bounds (MAX_DURATION_S, MAX_COUNT) that every place using them can hold.
The caller says where a value was set; every error is one line for an operator. Secrets read
from files are refused here too when they are placeholders or too short, and bearer tokens
when no client could present them.
"""
from __future__ import annotations

import math
import urllib.parse
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from mmserver import small_file
from mmserver.addresses import BadAddress, canonical_address
from mmserver.config.model import (
    PLACEHOLDER_MARKS,
    REDIS_SCHEMES,
    TRUSTABLE_CLAIMS,
    Address,
    ConfigError,
)
from mmserver.redis_url import redact
from mmserver.decimal_text import parse_decimal


# Durations end up as milliseconds added to Redis's clock inside Lua scripts and as PEXPIRE
# arguments, and as timeouts of sockets, sleeps and APScheduler. Ten years keeps now plus any of
# them below 10^14 ms, which Lua prints exactly (%.14g; 2^53 and Redis's 64-bit integers are
# further still), and far below what time.sleep or socket.settimeout accept (about 292 years).
MAX_DURATION_S = 10 * 365 * 24 * 3600  # 315,360,000 s
MAX_DURATION_MS = MAX_DURATION_S * 1000
DURATION_BOUND = "10 years"
# Counts (event log lengths, attempts, bursts, sizes): beyond any deployment, and exact where
# Lua prints them as script arguments (XADD MAXLEN).
MAX_COUNT = 1_000_000_000


def parse_address(raw: str) -> Address:
    host, sep, port = raw.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"expected HOST:PORT, got {raw!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    number = parse_decimal(port, 5)
    if number is None:
        raise ConfigError(f"port must be a number in {raw!r}")
    if not 0 <= number <= 65535:
        raise ConfigError(f"port out of range in {raw!r}")
    return Address(host, number)


def split_url(url: str, shown: str) -> urllib.parse.SplitResult:
    """urlsplit, its ValueError (an unclosed '[', a bracketed host that is no IPv6 address) made
    a refusal; `shown` is the URL as a message may show it (passwords redacted)."""
    try:
        return urllib.parse.urlsplit(url)
    except ValueError as error:
        raise ConfigError(f"bad URL {shown!r}: {error}") from None


def redis_url(raw: str) -> str:
    parsed = split_url(raw, redact(raw))
    if parsed.scheme not in REDIS_SCHEMES:
        raise ConfigError(
            f"unsupported scheme {parsed.scheme or '(none)'!r}; use one of {', '.join(REDIS_SCHEMES)}"
        )
    if parsed.scheme == "unix":
        if not parsed.path:
            raise ConfigError("a unix:// URL needs a socket path")
        return raw
    if parsed.scheme == "redis+sentinel":
        # redis+sentinel://[password@]host:port[,host:port...]/service_name[/db]
        hosts = parsed.netloc.rpartition("@")[2]
        if not hosts:
            raise ConfigError(f"no sentinel host in {raw!r}")
        for host in hosts.split(","):
            parse_address(host if ":" in host else f"{host}:26379")
        if not parsed.path.strip("/"):
            raise ConfigError(f"no service name in {raw!r} (redis+sentinel://host:port/service_name)")
        return raw
    if not parsed.hostname:
        raise ConfigError(f"no host in {raw!r}")
    try:
        parsed.port  # raises on a bad port
    except ValueError:
        raise ConfigError("bad port in the Redis URL") from None
    # redis-py reads the database from the path's digits and silently uses 0 when they are not
    # a number ("/3x", "/abc"), and "/1/2" as 12: only "", "/" and "/N" are taken.
    database = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
    if database and parse_decimal(database, 9) is None:
        raise ConfigError(f"the database in {redact(raw)!r} must be a number (redis://host:port/N), got {database!r}")
    return raw


# --- value rules: one check and one wording each, for flags, the environment and the TOML file.
# Flags and variables arrive as text and are parsed first; TOML values arrive typed and are
# type-checked first (a TOML string "5" is not a number). The caller prefixes where it was set.

def _shown(value: float) -> str:
    """A value for a message: a huge integer by its length, not its 4,000 digits."""
    if isinstance(value, int) and abs(value) >= 10 ** 30:
        return f"an integer of {len(str(abs(value)))} digits"
    return f"{value:g}" if isinstance(value, float) else f"{value}"


def _at_least(value: int, minimum: int) -> int:
    if value < minimum:
        raise ConfigError(f"must be at least {minimum}, got {_shown(value)}")
    return value


def _at_most(value: float, maximum: float, bound: str = "") -> float:
    if value > maximum:
        raise ConfigError(f"must be at most {maximum:,}{bound}, got {_shown(value)}")
    return value


def _duration(value: float) -> float:
    return _at_most(_non_negative(value), MAX_DURATION_S, f" s ({DURATION_BOUND})")


def _positive_duration(value: float) -> float:
    return _duration(_greater_than_zero(value))


def _non_negative(value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"expected a finite number >= 0, got {value!r}")
    return float(value)


def _non_empty_text(value: str) -> str:
    if not value.strip():
        raise ConfigError("must not be empty")
    return value.strip()


def _greater_than_zero(value: float) -> float:
    if _non_negative(value) <= 0:
        raise ConfigError(f"must be greater than 0, got {value!r}")
    return float(value)


@contextmanager
def _at(where: str) -> Iterator[None]:
    """Prefix a ConfigError raised inside with where the value was set."""
    try:
        yield
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def _text_int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"expected an integer, got {raw!r}") from None


def _text_number(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"expected a number, got {raw!r}") from None


def int_at_least(minimum: int, maximum: int = MAX_COUNT) -> Callable[[str], int]:
    return lambda raw: _at_most(_at_least(_text_int(raw), minimum), maximum)


def milliseconds(minimum: int) -> Callable[[str], int]:
    return lambda raw: _at_most(_at_least(_text_int(raw), minimum), MAX_DURATION_MS, f" ms ({DURATION_BOUND})")


def seconds(raw: str) -> float:
    return _duration(_text_number(raw))


def positive_seconds(raw: str) -> float:
    return _positive_duration(_text_number(raw))


def choice(choices: Sequence[str], fold: Callable[[str], str] = str.lower) -> Callable[[str], str]:
    def convert(raw: str) -> str:
        value = fold(raw.strip())
        if value not in choices:
            raise ConfigError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return convert


def sentry_dsn(raw: str) -> str:
    """A DSN the Sentry SDK can parse: it would refuse any other only at start-up, with exit 1."""
    dsn = _non_empty_text(raw)
    from sentry_sdk.utils import Dsn  # here: a run without Sentry does not load the SDK to start

    try:
        Dsn(dsn)
    except ValueError as error:  # BadDsn, or urlsplit's own on a malformed host
        raise ConfigError(f"not a Sentry DSN ({error}); expected https://KEY@HOST/PROJECT_ID") from None
    return dsn


def nonempty_path(raw: str) -> Path:
    _non_empty_text(raw)  # a path of blanks is a slip, not a directory anyone meant
    return Path(raw)


def toml_int(minimum: int, maximum: int = MAX_COUNT) -> Callable[[str, Any], int]:
    def convert(where: str, value: Any) -> int:
        with _at(where):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"expected an integer, got {value!r}")
            return _at_most(_at_least(value, minimum), maximum)

    return convert


def _toml_typed_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"expected a number, got {value!r}")
    try:
        return float(value)
    except OverflowError:  # a TOML integer beyond a float's range (about 1.8e308)
        raise ConfigError(f"expected a number, got an integer of {len(str(abs(value)))} digits") from None


def toml_number(where: str, value: Any) -> float:
    with _at(where):
        return _non_negative(_toml_typed_number(value))


def toml_positive(where: str, value: Any) -> float:
    with _at(where):
        return _greater_than_zero(_toml_typed_number(value))


def toml_duration(where: str, value: Any) -> float:
    """Seconds, 0 included, at most MAX_DURATION_S."""
    with _at(where):
        return _duration(_toml_typed_number(value))


def toml_positive_duration(where: str, value: Any) -> float:
    with _at(where):
        return _positive_duration(_toml_typed_number(value))


def toml_token(where: str, value: Any) -> str:
    with _at(where):
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {value!r}")
        return _non_empty_text(value)


def toml_addresses(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of \"host:port\" strings")
    addresses = []
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(f"{where}: expected \"host:port\" strings, got {item!r}")
        try:
            addresses.append(canonical_address(item))  # as servers register theirs
        except BadAddress as error:
            raise ConfigError(f"{where}: {error} in {item!r}") from None
    if len(set(addresses)) != len(addresses):
        raise ConfigError(f"{where}: an address is listed twice")
    return tuple(addresses)


def toml_static(where: str, value: Any) -> tuple[tuple[str, str | None], ...]:
    """Static servers: "host:port" strings or {address = "host:port", region = "..."} tables."""
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of \"host:port\" strings or {{address, region}} tables")
    entries = []
    for item in value:
        region = None
        if isinstance(item, dict):
            unknown = set(item) - {"address", "region"}
            if unknown or "address" not in item:
                raise ConfigError(f"{where}: a table entry holds address and optionally region")
            region = item.get("region")
            if region is not None and not isinstance(region, str):
                raise ConfigError(f"{where}: region must be a string")
            item = item["address"]
        (address,) = toml_addresses(where, [item])
        entries.append((address, region))
    return tuple(entries)


def toml_string(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 1024:
        raise ConfigError(f"{where}: expected a non-empty string")
    return value.strip()


def toml_path(where: str, value: Any) -> Path:
    return Path(toml_string(where, value))


def toml_bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false")
    return value


def toml_secrets(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: expected a list of non-empty strings")
    return tuple(v.strip() for v in value)


def toml_claims(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of claim names")
    for claim in value:
        if claim not in TRUSTABLE_CLAIMS:
            raise ConfigError(f"{where}: {claim!r} cannot be trusted from a token "
                              f"(known: {', '.join(TRUSTABLE_CLAIMS)})")
    return tuple(dict.fromkeys(value))


def parse_table(table: Any, keys: Mapping[str, Callable[[str, Any], Any]], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    values = {}
    for key, value in table.items():
        if key not in keys:
            raise ConfigError(f"{where}: unknown option {key!r} (known: {', '.join(keys)})")
        values[key] = keys[key](f"{where}.{key}", value)
    return values


def why(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def read_secret_file(path: Path, where: str) -> str:
    try:
        text = small_file.read_bytes(path).decode("utf-8").strip()
    except small_file.NotASmallFile as error:
        raise ConfigError(f"{where}: {path} {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{where}: cannot read {path}: {why(error)}") from None
    if not text:
        raise ConfigError(f"{where}: {path} is empty")
    return text


def refuse_placeholder(secret: str, where: str) -> None:
    folded = secret.lower()
    if any(mark in folded for mark in PLACEHOLDER_MARKS):
        raise ConfigError(f"{where}: holds a placeholder left from an example; set a real secret")


def _presentable(secret: str) -> str:
    """A bearer secret a client can present. credentials.bearer_token drops a token holding
    whitespace; header values arrive latin-1 decoded while clients send UTF-8, so a non-ASCII
    secret never compares equal; HTTP servers refuse control characters in a header. What
    remains is '!'..'~'."""
    if not all("!" <= char <= "~" for char in secret):
        raise ConfigError("a bearer token must be printable ASCII without spaces (no client could present this one)")
    return secret


def bearer_secret(raw: str) -> str:
    return _presentable(_non_empty_text(raw))


def refuse_unpresentable(secret: str, where: str) -> None:
    with _at(where):
        _presentable(secret)


def refuse_short(secret: str, where: str, minimum: int) -> None:
    if len(secret.encode("utf-8")) < minimum:
        raise ConfigError(f"{where}: a secret must be at least {minimum} characters long")
