"""The one configuration object, built once from flags, environment and the TOML file.

Every setting is a row of SETTINGS: (name, converter, default, help). Each has an environment
variable MMSERVER_<NAME> and a flag --<name-with-dashes>; flags win over the environment.
Anything invalid raises ConfigError with one line meant for an operator; nothing is started
before the whole configuration is valid. Components receive values from Config and never read
os.environ themselves.
"""
from __future__ import annotations

import argparse
import ipaddress
import math
import tomllib
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

ENV_PREFIX = "MMSERVER_"
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """Invalid configuration: the message is one line, shown as is to the operator."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True)
class ModeConfig:
    """One queue: the name is the `mode` clients send."""

    name: str
    team_size: int = 1
    teams: int = 2
    accept_timeout_s: float = 10.0  # 0: no ready check
    mmr_window: float = 100.0
    mmr_window_growth_per_s: float = 20.0
    mmr_window_max: float = 1000.0
    ticket_ttl_s: float = 300.0

    @property
    def players_per_match(self) -> int:
        return self.team_size * self.teams


@dataclass(frozen=True)
class ServersConfig:
    token: str | None = None  # None: the dedicated-server endpoints answer 403
    static: tuple[str, ...] = ()
    heartbeat_ttl_s: float = 15.0
    allocation_timeout_s: float = 30.0


@dataclass(frozen=True)
class Config:
    redis_url: str | None = None  # None: embedded Redis under data_dir
    data_dir: Path = Path("./var")
    listen: Address = Address("127.0.0.1", 8080)
    admin_listen: Address = Address("127.0.0.1", 8081)
    admin_token: str | None = None
    config_file: Path | None = None
    tick_interval_ms: int = 500
    redis_reconnect_attempts: int = 10
    redis_backoff_initial_ms: int = 1000
    redis_backoff_max_ms: int = 60000
    drain_delay_s: float = 0.0
    shutdown_timeout_s: float = 20.0
    sentry_dsn: str | None = None
    log_format: str = "text"
    log_level: str = "INFO"
    http_threads: int = 16
    max_longpolls: int = 12
    max_body_bytes: int = 16384
    modes: Mapping[str, ModeConfig] = field(
        default_factory=lambda: {"duel": ModeConfig(name="duel")}
    )
    servers: ServersConfig = field(default_factory=ServersConfig)

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None


# --- converters: each takes the raw string and returns a value or raises ConfigError ---

def _address(raw: str) -> Address:
    host, sep, port = raw.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"expected HOST:PORT, got {raw!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"port must be a number in {raw!r}") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"port out of range in {raw!r}")
    return Address(host, number)


def _redis_url(raw: str) -> str:
    parsed = urllib.parse.urlsplit(raw)
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
            _address(host if ":" in host else f"{host}:26379")
        if not parsed.path.strip("/"):
            raise ConfigError(f"no service name in {raw!r} (redis+sentinel://host:port/service_name)")
        return raw
    if not parsed.hostname:
        raise ConfigError(f"no host in {raw!r}")
    try:
        parsed.port  # raises on a bad port
    except ValueError:
        raise ConfigError("bad port in the Redis URL") from None
    return raw


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def convert(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"expected an integer, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"must be at least {minimum}, got {value}")
        return value

    return convert


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"expected a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"must be a finite number >= 0, got {raw!r}")
    return value


def _positive_seconds(raw: str) -> float:
    value = _seconds(raw)
    if value <= 0:
        raise ConfigError(f"must be greater than 0, got {raw!r}")
    return value


def _choice(choices: Sequence[str], fold: Callable[[str], str] = str.lower) -> Callable[[str], str]:
    def convert(raw: str) -> str:
        value = fold(raw.strip())
        if value not in choices:
            raise ConfigError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return convert


def _nonempty(raw: str) -> str:
    if not raw.strip():
        raise ConfigError("must not be empty")
    return raw.strip()


def _path(raw: str) -> Path:
    if not raw:
        raise ConfigError("must not be empty")
    return Path(raw)


# name, converter, help. Defaults are the Config dataclass defaults.
SETTINGS: tuple[tuple[str, Callable[[str], Any], str], ...] = (
    ("redis_url", _redis_url, "redis://, rediss://, unix:// or redis+sentinel:// URL; unset: embedded Redis"),
    ("data_dir", _path, "where the embedded Redis keeps its data and the generated admin token"),
    ("listen", _address, "public API listener, HOST:PORT"),
    ("admin_listen", _address, "control-plane listener, HOST:PORT"),
    ("admin_token", _nonempty, "bearer token for /admin/*"),
    ("admin_token_file", _path, "file holding the bearer token for /admin/*"),
    ("config", _path, "TOML file: modes, matching rules, servers"),
    ("tick_interval_ms", _int_at_least(10), "matchmaker tick period"),
    ("redis_reconnect_attempts", _int_at_least(0), "subscriber reconnects before it gives up"),
    ("redis_backoff_initial_ms", _int_at_least(1), "first reconnect delay, doubling each time"),
    ("redis_backoff_max_ms", _int_at_least(1), "cap on the reconnect delay"),
    ("drain_delay_s", _seconds, "seconds readiness reports 503 before listeners close"),
    ("shutdown_timeout_s", _positive_seconds, "bound on the whole drain-and-flush sequence"),
    ("sentry_dsn", _nonempty, "Sentry DSN; unset disables Sentry"),
    ("log_format", _choice(LOG_FORMATS), "text or json"),
    ("log_level", _choice(LOG_LEVELS, str.upper), "DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    ("http_threads", _int_at_least(4), "waitress worker threads shared by both listeners"),
    ("max_longpolls", _int_at_least(0), "long-polls allowed to wait at once; beyond, answer at once"),
    ("max_body_bytes", _int_at_least(256), "largest request body accepted (413 beyond)"),
)


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmserver",
        description="Self-hosted matchmaking service. Every flag also reads MMSERVER_<NAME>; flags win.",
    )
    for name, _convert, help_text in SETTINGS:
        parser.add_argument(flag_name(name), dest=name, default=None, metavar="VALUE",
                            help=f"{help_text} (env {env_name(name)})")
    return parser


def load(argv: Sequence[str], environ: Mapping[str, str]) -> Config:
    """Build the Config from command-line arguments and environment, or raise ConfigError."""
    parser = build_parser()
    # argparse exits 2 on usage errors with its own one-line message, which is what we want.
    args = vars(parser.parse_args(list(argv)))
    values: dict[str, Any] = {}
    for name, convert, _help in SETTINGS:
        raw = args.get(name)
        source = flag_name(name)
        if raw is None:
            raw = environ.get(env_name(name))
            source = env_name(name)
        if raw is None or (raw == "" and source.startswith(ENV_PREFIX)):
            continue  # an empty variable counts as unset, as shells commonly leave them
        try:
            values[name] = convert(raw)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None
    return from_values(values)


def from_values(values: Mapping[str, Any]) -> Config:
    """Assemble and cross-check a Config from converted setting values."""
    values = dict(values)
    token_file = values.pop("admin_token_file", None)
    if token_file is not None and "admin_token" not in values:
        values["admin_token"] = _read_token_file(token_file)
    config_file = values.pop("config", None)
    if config_file is not None:
        values["config_file"] = config_file
        values.update(load_config_file(config_file))
    config = Config(**values)
    _check(config)
    return config


def _read_token_file(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{env_name('admin_token_file')}: cannot read {path}: {_why(error)}") from None
    if not token:
        raise ConfigError(f"{env_name('admin_token_file')}: {path} is empty")
    return token


def _why(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def _check(config: Config) -> None:
    if config.redis_backoff_max_ms < config.redis_backoff_initial_ms:
        raise ConfigError(
            f"{env_name('redis_backoff_max_ms')} ({config.redis_backoff_max_ms}) is below "
            f"{env_name('redis_backoff_initial_ms')} ({config.redis_backoff_initial_ms})"
        )
    if config.max_longpolls > config.http_threads - 2:
        raise ConfigError(
            f"{env_name('max_longpolls')} ({config.max_longpolls}) must leave at least 2 of the "
            f"{config.http_threads} {env_name('http_threads')} free for other requests"
        )
    if not config.admin_listen.is_loopback and config.admin_token is None:
        raise ConfigError(
            f"{env_name('admin_listen')} {config.admin_listen} is not a loopback address: "
            f"set {env_name('admin_token')} or {env_name('admin_token_file')}"
        )
    if config.listen == config.admin_listen and config.listen.port != 0:
        raise ConfigError(f"{env_name('listen')} and {env_name('admin_listen')} are the same address")


# --- the TOML file ---

_MODE_KEYS: dict[str, Callable[[str, Any], Any]] = {}
_SERVER_KEYS: dict[str, Callable[[str, Any], Any]] = {}


def _toml_int(minimum: int) -> Callable[[str, Any], int]:
    def convert(where: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if value < minimum:
            raise ConfigError(f"{where}: must be at least {minimum}, got {value}")
        return value

    return convert


def _toml_number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if value < 0:
        raise ConfigError(f"{where}: must not be negative, got {value}")
    return float(value)


def _toml_positive(where: str, value: Any) -> float:
    number = _toml_number(where, value)
    if number <= 0:
        raise ConfigError(f"{where}: must be greater than 0, got {value}")
    return number


def _toml_token(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a non-empty string")
    return value.strip()


def _toml_addresses(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of \"host:port\" strings")
    addresses = []
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(f"{where}: expected \"host:port\" strings, got {item!r}")
        try:
            address = _address(item)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
        if address.port == 0:
            raise ConfigError(f"{where}: port 0 in {item!r}")
        addresses.append(str(address))
    if len(set(addresses)) != len(addresses):
        raise ConfigError(f"{where}: an address is listed twice")
    return tuple(addresses)


_MODE_KEYS.update(
    team_size=_toml_int(1),
    teams=_toml_int(2),
    accept_timeout_s=_toml_number,
    mmr_window=_toml_number,
    mmr_window_growth_per_s=_toml_number,
    mmr_window_max=_toml_number,
    ticket_ttl_s=_toml_positive,
)
_SERVER_KEYS.update(
    token=_toml_token,
    static=_toml_addresses,
    heartbeat_ttl_s=_toml_positive,
    allocation_timeout_s=_toml_positive,
)
MODE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def load_config_file(path: Path) -> dict[str, Any]:
    where = env_name("config")
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"{where}: cannot read {path}: {_why(error)}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where}: {path} is not valid TOML: {error}") from None
    return parse_config_document(document, f"{path}")


def parse_config_document(document: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = set(document) - {"modes", "servers"}
    if unknown:
        raise ConfigError(f"{where}: unknown section {sorted(unknown)[0]!r} (known: modes, servers)")
    result: dict[str, Any] = {}
    if "modes" in document:
        modes_table = document["modes"]
        if not isinstance(modes_table, dict) or not modes_table:
            raise ConfigError(f"{where}: [modes] must hold at least one [modes.NAME] table")
        result["modes"] = {
            name: _parse_mode(name, table, f"{where}: modes.{name}") for name, table in modes_table.items()
        }
    if "servers" in document:
        result["servers"] = _parse_servers(document["servers"], f"{where}: servers")
    return result


def _parse_table(table: Any, keys: Mapping[str, Callable[[str, Any], Any]], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    values = {}
    for key, value in table.items():
        if key not in keys:
            raise ConfigError(f"{where}: unknown option {key!r} (known: {', '.join(keys)})")
        values[key] = keys[key](f"{where}.{key}", value)
    return values


def _parse_mode(name: str, table: Any, where: str) -> ModeConfig:
    if not name or len(name) > 64 or not set(name) <= MODE_NAME_CHARS:
        raise ConfigError(f"{where}: a mode name is 1-64 letters, digits, '_' or '-'")
    mode = ModeConfig(name=name, **_parse_table(table, _MODE_KEYS, where))
    if mode.mmr_window_max < mode.mmr_window:
        raise ConfigError(
            f"{where}: mmr_window_max ({mode.mmr_window_max:g}) is below mmr_window ({mode.mmr_window:g})"
        )
    return mode


def _parse_servers(table: Any, where: str) -> ServersConfig:
    return ServersConfig(**_parse_table(table, _SERVER_KEYS, where))
