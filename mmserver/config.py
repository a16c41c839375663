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
import re
import tomllib
import urllib.parse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mmserver.matchmaking import functions
from mmserver.matchmaking.rules import ATTRIBUTE_TYPES, MMR_RULE, RULE_KINDS, Latency, Rule, Step

ENV_PREFIX = "MMSERVER_"
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEMO_ACCEPT_TIMEOUT_S = 60.0
# With no server token configured and a loopback public listener, the dedicated-server
# endpoints take this one, so the README's walk-through works on a plain `make run`.
DEMO_SERVER_TOKEN = "demo-server-token"
# Secrets left as shipped in an example file: refused at start wherever a secret is read.
PLACEHOLDER_MARKS = ("change-me", "changeme", "change_me", "replace-me", "replace_me", "replaceme",
                     "placeholder", "your-secret", "your_secret")
MIN_SECRET_CHARS = 16
MIN_JWT_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash
TRUSTABLE_CLAIMS = ("mmr", "region")
# Where the embedded Redis keeps its data and mmserver writes the admin token it generates
# (mmserver/admin_token.py); mmadmin looks there too.
DEFAULT_DATA_DIR = Path("./var")


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


# The control plane's listener; mmadmin's default target.
DEFAULT_ADMIN_LISTEN = Address("127.0.0.1", 8081)


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
    max_match_s: float = 14400.0  # an assigned match older than this is finished ("max duration")
    # Match rules (SPEC "Match rules (v2)"); the defaults are today's plain mode.
    min_team_size: int | None = None  # None: every team holds exactly team_size
    fill_wait_s: float = 0.0  # oldest ticket's wait before teams below team_size may form
    attributes: tuple[tuple[str, str], ...] = ()  # (name, "string" | "number" | "string_list")
    roles: tuple[tuple[str, int], ...] = ()  # per team, (role, count), in file order
    rules: tuple[Rule, ...] = ()
    latency: Latency | None = None
    match_function: str | None = None  # "module:function", imported at start

    @property
    def players_per_match(self) -> int:
        return self.team_size * self.teams

    @property
    def has_profiles(self) -> bool:
        """Tickets of this mode carry a match profile (store/profiles.py): attributes,
        latencies, roles, or player ids for a match function."""
        return bool(self.attributes or self.roles or self.latency or self.match_function)


@dataclass(frozen=True)
class ServersConfig:
    token: str | None = None  # None: the dedicated-server endpoints answer 403
    static: tuple[str, ...] = ()
    static_regions: Mapping[str, str] = field(default_factory=dict)  # address -> region
    heartbeat_ttl_s: float = 15.0
    allocation_timeout_s: float = 30.0
    retention_s: float = 3600.0  # a registered server silent this long leaves the registry


@dataclass(frozen=True)
class AuthConfig:
    """The `[auth]` table: who may create and act on tickets (SPEC "Who may call what")."""

    backend_keys: tuple[str, ...] = ()
    player_jwt_key: str | None = None        # HS256 secret, or a PEM public key
    player_jwt_algorithm: str | None = None  # HS256, RS256 or ES256, from the key's kind
    player_jwt_issuer: str | None = None
    player_jwt_audience: str | None = None
    trusted_claims: tuple[str, ...] = ()
    open: bool = False


@dataclass(frozen=True)
class LimitsConfig:
    """The `[limits]` table: token buckets per credential (None: not limited)."""

    poll_per_s: float | None = 10.0      # per ticket token or player
    poll_burst: int = 20
    create_per_min: float | None = 10.0  # per player
    create_burst: int = 10
    backend_per_s: float | None = None   # per backend key
    backend_burst: int = 100
    address_per_s: float | None = None   # per client address
    address_burst: int = 100


@dataclass(frozen=True)
class EventsConfig:
    """The `[events]` table: how much of the event log Redis keeps (SPEC "Events (v2)").

    Both bounds apply: an event leaves the log when it is older than `max_age_s` or when more
    than `max_len` newer ones exist (trimmed approximately, a little over either bound)."""

    max_len: int = 1_000_000
    max_age_s: float = 3600.0


@dataclass(frozen=True)
class WebhooksConfig:
    """The `[webhooks]` table: where events are POSTed and how failures are retried
    (docs/WEBHOOKS.md). Absent table: no webhooks (Config.webhooks is None)."""

    url: str
    secret: str = field(repr=False)  # read from secret_file; never logged
    # Event types or "prefix.*" patterns (e.g. "ticket.*"); None: every event.
    events: tuple[str, ...] | None = None
    max_attempts: int = 10
    timeout_s: float = 5.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    max_dead_letters: int = 10_000  # the dead-letter stream is trimmed to about this many

    def wants(self, event_type: str) -> bool:
        """Whether an event of this type is sent (the others are acknowledged unsent)."""
        if self.events is None:
            return True
        return any(event_type == pattern or (pattern.endswith(".*") and event_type.startswith(pattern[:-1]))
                   for pattern in self.events)


@dataclass(frozen=True)
class Config:
    redis_url: str | None = None  # None: embedded Redis under data_dir
    data_dir: Path = DEFAULT_DATA_DIR
    listen: Address = Address("127.0.0.1", 8080)
    admin_listen: Address = DEFAULT_ADMIN_LISTEN
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
    # Parked long-polls hold no thread (http/server.py): the cap bounds memory (~8 KiB each,
    # docs/PERFORMANCE.md "Waiting clients") and open connections, not the worker pool.
    max_longpolls: int = 10_000
    max_body_bytes: int = 16384
    # Ticket views cached in this replica's memory, invalidated by pub/sub (store/viewcache.py);
    # 0 turns the cache off (every poll is then a read script on Redis).
    view_cache: int = 50_000
    view_cache_max_age_s: float = 30.0  # a cached view older than this is read again
    modes: Mapping[str, ModeConfig] = field(
        # The built-in demo mode gives a person typing the README's commands time to accept.
        default_factory=lambda: {"duel": ModeConfig(name="duel", accept_timeout_s=DEMO_ACCEPT_TIMEOUT_S)}
    )
    servers: ServersConfig = field(default_factory=ServersConfig)
    auth: AuthConfig | None = None  # None: no [auth] table, creation open (loopback only)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    regions: tuple[str, ...] = ()  # [regions] names; empty: any region name is accepted
    events: EventsConfig = field(default_factory=EventsConfig)
    webhooks: WebhooksConfig | None = None  # None: no [webhooks] table

    @property
    def open_creation(self) -> bool:
        """Anyone may create tickets for any player (no [auth], or `open = true`)."""
        return self.auth is None or self.auth.open

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
    ("http_threads", _int_at_least(4), "waitress worker threads of the public API (the control plane has its own)"),
    ("max_longpolls", _int_at_least(0), "long-polls allowed to wait at once; beyond, answer at once"),
    ("max_body_bytes", _int_at_least(256), "largest request body accepted (413 beyond)"),
    ("view_cache", _int_at_least(0), "ticket views cached in memory, invalidated by pub/sub events; 0: off"),
    ("view_cache_max_age_s", _positive_seconds, "a cached ticket view older than this is read from Redis again"),
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
    # The demo server token only where creation is open too: a loopback demo, never beside a
    # real [auth] (a production replica behind a local proxy also listens on loopback).
    if config.servers.token is None and config.listen.is_loopback and config.open_creation:
        config = dataclasses.replace(
            config, servers=dataclasses.replace(config.servers, token=DEMO_SERVER_TOKEN))
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
    if not config.admin_listen.is_loopback and config.admin_token is None:
        raise ConfigError(
            f"{env_name('admin_listen')} {config.admin_listen} is not a loopback address: "
            f"set {env_name('admin_token')} or {env_name('admin_token_file')}"
        )
    if config.listen == config.admin_listen and config.listen.port != 0:
        raise ConfigError(f"{env_name('listen')} and {env_name('admin_listen')} are the same address")
    if config.open_creation and not config.listen.is_loopback:
        why = "[auth] has open = true" if config.auth is not None else "no [auth] table is configured"
        raise ConfigError(
            f"{env_name('listen')} {config.listen} is not a loopback address and {why}: anyone could "
            f"queue any player with any MMR; configure [auth] in {env_name('config')}"
        )
    if config.admin_token is not None:
        _refuse_placeholder(config.admin_token, env_name("admin_token"))


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


def _toml_static(where: str, value: Any) -> tuple[tuple[str, str | None], ...]:
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
        (address,) = _toml_addresses(where, [item])
        entries.append((address, region))
    return tuple(entries)


def _toml_string(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 1024:
        raise ConfigError(f"{where}: expected a non-empty string")
    return value.strip()


def _toml_path(where: str, value: Any) -> Path:
    return Path(_toml_string(where, value))


def _toml_bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false")
    return value


def _toml_secrets(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: expected a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _toml_claims(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of claim names")
    for claim in value:
        if claim not in TRUSTABLE_CLAIMS:
            raise ConfigError(f"{where}: {claim!r} cannot be trusted from a token "
                              f"(known: {', '.join(TRUSTABLE_CLAIMS)})")
    return tuple(dict.fromkeys(value))


def _toml_rate(where: str, value: Any) -> float:
    number = _toml_positive(where, value)
    return number


# --- match rules of a mode (SPEC "Match rules"): shapes here, cross-checks in _parse_mode ---

MAX_ATTRIBUTES = 16
MAX_ROLES = 16
ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_]{1,32}")
ROLE_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
RULE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# `blocked_by` names a rule by its name, or one of these: a rule may not take them.
RESERVED_RULE_NAMES = (MMR_RULE, "latency", "roles", "players")
# The types an attribute may have for each rule kind ("mmr" also suits distance).
RULE_ATTRIBUTE_TYPES = {"same": ("string", "number"), "overlap": ("string_list",), "distance": ("number",)}
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
FUNCTION_SPEC = re.compile(f"{_DOTTED}:{_DOTTED}")  # "package.module:function"


def _toml_limit(where: str, value: Any) -> float:
    """A rule's limit (max, max_ms): a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: expected a finite number >= 0, got {value!r}")
    return float(value)


def _toml_attributes(where: str, value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table of name = \"string\" | \"number\" | \"string_list\"")
    if len(value) > MAX_ATTRIBUTES:
        raise ConfigError(f"{where}: declares {len(value)} attributes, at most {MAX_ATTRIBUTES} are allowed")
    for name, kind in value.items():
        if not ATTRIBUTE_NAME.fullmatch(name):
            raise ConfigError(f"{where}: an attribute name is 1-32 letters, digits or '_', got {name!r}")
        if name == MMR_RULE:
            raise ConfigError(f"{where}: the attribute name {MMR_RULE!r} is reserved (the ticket's MMR)")
        if kind not in ATTRIBUTE_TYPES:
            raise ConfigError(f"{where}.{name}: expected one of {', '.join(map(repr, ATTRIBUTE_TYPES))}, "
                              f"got {kind!r}")
    return tuple(value.items())


def _toml_roles(where: str, value: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{where}: expected a table of role = count (players per team)")
    if len(value) > MAX_ROLES:
        raise ConfigError(f"{where}: declares {len(value)} roles, at most {MAX_ROLES} are allowed")
    for role, count in value.items():
        if not ROLE_NAME.fullmatch(role):
            raise ConfigError(f"{where}: a role name is 1-32 letters, digits, '_' or '-', got {role!r}")
        _toml_int(1)(f"{where}.{role}", count)
    return tuple(value.items())


def _toml_steps(where: str, value: Any, key: str, base: float) -> tuple[Step, ...]:
    """An expansion: steps {after_s, <key>} that only ever widen the base limit."""
    shape = f"{{after_s = S, {key} = N}}"
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of {shape} tables")
    steps: list[Step] = []
    for index, item in enumerate(value):
        here = f"{where}[{index}]"
        if not isinstance(item, dict) or set(item) != {"after_s", key}:
            raise ConfigError(f"{here}: expected {shape}, got {item!r}")
        after_s = _toml_limit(f"{here}.after_s", item["after_s"])
        limit = _toml_limit(f"{here}.{key}", item[key])
        if after_s <= (steps[-1].after_s if steps else 0.0):
            raise ConfigError(f"{here}: after_s ({after_s:g}) must be greater than "
                              + (f"the previous step's ({steps[-1].after_s:g})" if steps else "0"))
        floor, of = (steps[-1].value, "the previous step's") if steps else (base, "the base")
        if limit < floor:
            raise ConfigError(f"{here}: {key} {limit:g} is below {of} {floor:g}: an expansion only widens")
        steps.append(Step(after_s, limit))
    return tuple(steps)


def _toml_rules(where: str, value: Any) -> tuple[Rule, ...]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ConfigError(f"{where}: expected [[rules]] tables (name, kind, attribute)")
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(value):
        here = f"{where}[{index}]"
        name = table.get("name")
        if name is None:
            raise ConfigError(f"{here}: missing key 'name'")
        if not isinstance(name, str) or not RULE_NAME.fullmatch(name):
            raise ConfigError(f"{here}: a rule name is 1-64 letters, digits, '_', '.' or '-', got {name!r}")
        here = f'{here} "{name}"'
        if name in RESERVED_RULE_NAMES:
            raise ConfigError(f"{here}: the rule name {name!r} is reserved "
                              f"({', '.join(RESERVED_RULE_NAMES)} are names blocked_by uses)")
        if name in seen:
            raise ConfigError(f"{here}: rules[{seen[name]}] has the same name")
        seen[name] = index
        for key in ("kind", "attribute"):
            if key not in table:
                raise ConfigError(f"{here}: missing key {key!r}")
        kind = table["kind"]
        if kind not in RULE_KINDS:
            raise ConfigError(f"{here}: unknown kind {kind!r} (known: {', '.join(RULE_KINDS)})")
        known = ("name", "kind", "attribute") + (("max", "expand") if kind == "distance" else ())
        for key in table:
            if key in ("max", "expand") and kind != "distance":
                raise ConfigError(f"{here}: {key!r} applies only to distance rules, not {kind}")
            if key not in known:
                raise ConfigError(f"{here}: unknown key {key!r} (known: {', '.join(known)})")
        attribute = table["attribute"]
        if not isinstance(attribute, str) or not attribute:
            raise ConfigError(f"{here}: attribute must be an attribute name, got {attribute!r}")
        if kind == "distance":
            if "max" not in table:
                raise ConfigError(f"{here}: missing key 'max' (a distance rule's largest gap)")
            limit = _toml_limit(f"{here}: max", table["max"])
            expand = _toml_steps(f"{here}: expand", table.get("expand", []), "max", limit)
            rules.append(Rule(name, kind, attribute, limit, expand))
        else:
            rules.append(Rule(name, kind, attribute))
    return tuple(rules)


def _toml_latency(where: str, value: Any) -> Latency:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table (max_ms, optionally expand)")
    for key in value:
        if key not in ("max_ms", "expand"):
            raise ConfigError(f"{where}: unknown key {key!r} (known: max_ms, expand)")
    if "max_ms" not in value:
        raise ConfigError(f"{where}: missing key 'max_ms'")
    limit = _toml_limit(f"{where}.max_ms", value["max_ms"])
    return Latency(limit, _toml_steps(f"{where}.expand", value.get("expand", []), "max_ms", limit))


def _toml_function_spec(where: str, value: Any) -> str:
    if not isinstance(value, str) or not FUNCTION_SPEC.fullmatch(value):
        raise ConfigError(f"{where}: expected \"module:function\" (e.g. \"mygame.matching:propose\"), got {value!r}")
    return value


_MODE_KEYS.update(
    team_size=_toml_int(1),
    min_team_size=_toml_int(1),
    max_team_size=_toml_int(1),
    teams=_toml_int(1),  # 1: a lobby
    fill_wait_s=_toml_number,
    accept_timeout_s=_toml_number,
    mmr_window=_toml_number,
    mmr_window_growth_per_s=_toml_number,
    mmr_window_max=_toml_number,
    ticket_ttl_s=_toml_positive,
    max_match_s=_toml_positive,
    attributes=_toml_attributes,
    roles=_toml_roles,
    rules=_toml_rules,
    latency=_toml_latency,
    match_function=_toml_function_spec,
)
_SERVER_KEYS.update(
    token=_toml_token,
    token_file=_toml_path,
    static=_toml_static,
    heartbeat_ttl_s=_toml_positive,
    allocation_timeout_s=_toml_positive,
    retention_s=_toml_positive,
)
_AUTH_KEYS: dict[str, Callable[[str, Any], Any]] = dict(
    backend_keys=_toml_secrets,
    backend_keys_file=_toml_path,
    player_jwt_secret_file=_toml_path,
    player_jwt_public_key_file=_toml_path,
    player_jwt_issuer=_toml_string,
    player_jwt_audience=_toml_string,
    trusted_claims=_toml_claims,
    open=_toml_bool,
)
_LIMIT_KEYS: dict[str, Callable[[str, Any], Any]] = dict(
    poll_per_s=_toml_rate,
    poll_burst=_toml_int(1),
    create_per_min=_toml_rate,
    create_burst=_toml_int(1),
    backend_per_s=_toml_rate,
    backend_burst=_toml_int(1),
    address_per_s=_toml_rate,
    address_burst=_toml_int(1),
)
_EVENT_KEYS: dict[str, Callable[[str, Any], Any]] = dict(
    max_len=_toml_int(1000),
    max_age_s=_toml_positive,
)
MAX_REGIONS = 64
REGION_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
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


SECTIONS = ("modes", "servers", "regions", "auth", "limits", "events", "webhooks")


def parse_config_document(document: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = set(document) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{where}: unknown section {sorted(unknown)[0]!r} (known: {', '.join(SECTIONS)})")
    result: dict[str, Any] = {}
    # Regions first: a mode's [latency] places matches in them.
    regions: tuple[str, ...] = ()
    if "regions" in document:
        regions = _parse_regions(document["regions"], f"{where}: regions")
        result["regions"] = regions
    modes_table = document.get("modes")
    if modes_table is None:
        # A file is a deployment's whole description: no silent fallback to the demo mode.
        raise ConfigError(f"{where}: configures no mode; add a [modes.NAME] table")
    if not isinstance(modes_table, dict) or not modes_table:
        raise ConfigError(f"{where}: [modes] must hold at least one [modes.NAME] table")
    result["modes"] = {
        name: _parse_mode(name, table, f"{where}: modes.{name}", regions) for name, table in modes_table.items()
    }
    if "servers" in document:
        result["servers"] = _parse_servers(document["servers"], f"{where}: servers", regions)
    if "auth" in document:
        result["auth"] = _parse_auth(document["auth"], f"{where}: auth")
    if "limits" in document:
        result["limits"] = LimitsConfig(**_parse_table(document["limits"], _LIMIT_KEYS, f"{where}: limits"))
    if "events" in document:
        result["events"] = EventsConfig(**_parse_table(document["events"], _EVENT_KEYS, f"{where}: events"))
    if "webhooks" in document:
        result["webhooks"] = _parse_webhooks(document["webhooks"], f"{where}: webhooks")
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


def _parse_mode(name: str, table: Any, where: str, regions: Sequence[str] = ()) -> ModeConfig:
    if not name or len(name) > 64 or not set(name) <= MODE_NAME_CHARS:
        raise ConfigError(f"{where}: a mode name is 1-64 letters, digits, '_' or '-'")
    values = _parse_table(table, _MODE_KEYS, where)
    _team_sizes(values, where)
    mode = ModeConfig(name=name, **values)
    if mode.mmr_window_max < mode.mmr_window:
        raise ConfigError(
            f"{where}: mmr_window_max ({mode.mmr_window_max:g}) is below mmr_window ({mode.mmr_window:g})"
        )
    _check_rules(mode, where)
    if mode.roles:
        if mode.min_team_size is not None:
            raise ConfigError(f"{where}.roles: roles need a fixed team size, not min_team_size "
                              f"{mode.min_team_size} below max_team_size {mode.team_size}")
        total = sum(count for _role, count in mode.roles)
        if total != mode.team_size:
            raise ConfigError(f"{where}.roles: role counts add up to {total}, the team size is {mode.team_size}")
    if mode.latency is not None and not regions:
        raise ConfigError(f"{where}.latency: needs [regions] names (the regions a match may be placed in)")
    if mode.match_function is not None:
        owned = [key for key in ("rules", "roles", "latency") if getattr(mode, key)]
        if owned:
            raise ConfigError(f"{where}: match_function owns the mode's matching rules; remove "
                              f"{', '.join(owned)} (attributes may stay, for the function to read)")
        try:
            functions.load(mode.match_function)
        except functions.MatchFunctionError as error:
            raise ConfigError(f"{where}.match_function: {error}") from None
    return mode


def _team_sizes(values: dict[str, Any], where: str) -> None:
    """team_size, or max_team_size with optional min_team_size: leaves team_size (the largest
    team) and min_team_size (only when below it) in `values`."""
    if "team_size" in values and ("min_team_size" in values or "max_team_size" in values):
        raise ConfigError(f"{where}: set team_size, or max_team_size (with min_team_size), not both")
    if "min_team_size" in values and "max_team_size" not in values:
        raise ConfigError(f"{where}: min_team_size needs max_team_size")
    if "max_team_size" in values:
        largest = values.pop("max_team_size")
        smallest = values.pop("min_team_size", largest)
        if smallest > largest:
            raise ConfigError(f"{where}: min_team_size ({smallest}) is above max_team_size ({largest})")
        values["team_size"] = largest
        if smallest < largest:
            values["min_team_size"] = smallest
    if "fill_wait_s" in values and "min_team_size" not in values:
        raise ConfigError(f"{where}: fill_wait_s needs a variable team size (min_team_size below max_team_size)")


def _check_rules(mode: ModeConfig, where: str) -> None:
    """Each rule's attribute is declared (or "mmr" for distance) and of a type its kind reads."""
    declared = dict(mode.attributes)
    section = f"[modes.{mode.name}.attributes]"
    for index, rule in enumerate(mode.rules):
        here = f'{where}.rules[{index}] "{rule.name}"'
        if rule.attribute == MMR_RULE:
            if rule.kind != "distance":
                raise ConfigError(f"{here}: attribute {MMR_RULE!r} (the ticket's MMR) suits only distance rules")
            continue
        kind = declared.get(rule.attribute)
        if kind is None:
            raise ConfigError(f"{here}: attribute {rule.attribute!r} is not declared in {section}")
        suits = RULE_ATTRIBUTE_TYPES[rule.kind]
        if kind not in suits:
            also = f" or {MMR_RULE!r}" if rule.kind == "distance" else ""
            raise ConfigError(f"{here}: attribute {rule.attribute!r} is a {kind}; {rule.kind} rules read "
                              f"a {' or '.join(suits)}{also}")


def _parse_servers(table: Any, where: str, regions: Sequence[str]) -> ServersConfig:
    if isinstance(table, dict) and "token" in table and "token_file" in table:
        raise ConfigError(f"{where}: set token or token_file, not both")
    values = _parse_table(table, _SERVER_KEYS, where)
    if "token_file" in values:
        values["token"] = _read_secret_file(values.pop("token_file"), f"{where}.token_file")
    if "token" in values:
        _refuse_placeholder(values["token"], f"{where}.token")
        _refuse_short(values["token"], f"{where}.token", MIN_SECRET_CHARS)
    static = values.pop("static", ())
    addresses, static_regions = [], {}
    for address, region in static:
        if region is not None:
            if region not in regions:
                raise ConfigError(f"{where}.static: region {region!r} of {address} is not in [regions] names")
            static_regions[address] = region
        addresses.append(address)
    if len(set(addresses)) != len(addresses):
        raise ConfigError(f"{where}.static: an address is listed twice")
    servers = ServersConfig(static=tuple(addresses), static_regions=static_regions, **values)
    if servers.retention_s < servers.heartbeat_ttl_s:
        raise ConfigError(f"{where}: retention_s ({servers.retention_s:g}) is below heartbeat_ttl_s "
                          f"({servers.heartbeat_ttl_s:g})")
    return servers


def _parse_regions(table: Any, where: str) -> tuple[str, ...]:
    if not isinstance(table, dict) or set(table) != {"names"}:
        raise ConfigError(f"{where}: expected one option, names = [\"region\", ...]")
    names = table["names"]
    if not isinstance(names, list) or not names or len(names) > MAX_REGIONS:
        raise ConfigError(f"{where}.names: expected a list of 1 to {MAX_REGIONS} region names")
    for name in names:
        if not isinstance(name, str) or not REGION_NAME.fullmatch(name):
            raise ConfigError(f"{where}.names: a region name is 1-32 letters, digits, '_' or '-', got {name!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}.names: a region is listed twice")
    return tuple(names)


def _parse_auth(table: Any, where: str) -> AuthConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    for a, b in (("backend_keys", "backend_keys_file"), ("player_jwt_secret_file", "player_jwt_public_key_file")):
        if a in table and b in table:
            raise ConfigError(f"{where}: set {a} or {b}, not both")
    values = _parse_table(table, _AUTH_KEYS, where)
    keys: tuple[str, ...] = values.pop("backend_keys", ())
    if "backend_keys_file" in values:
        path = values.pop("backend_keys_file")
        text = _read_secret_file(path, f"{where}.backend_keys_file")
        keys = tuple(line.strip() for line in text.splitlines()
                     if line.strip() and not line.strip().startswith("#"))
        if not keys:
            raise ConfigError(f"{where}.backend_keys_file: {path} holds no key")
    for key in keys:
        _refuse_placeholder(key, f"{where}.backend_keys")
        _refuse_short(key, f"{where}.backend_keys", MIN_SECRET_CHARS)
    values["backend_keys"] = keys
    if "player_jwt_secret_file" in values:
        field_name = f"{where}.player_jwt_secret_file"
        secret = _read_secret_file(values.pop("player_jwt_secret_file"), field_name)
        _refuse_placeholder(secret, field_name)
        _refuse_short(secret, field_name, MIN_JWT_SECRET_BYTES)
        values["player_jwt_key"], values["player_jwt_algorithm"] = secret, "HS256"
    elif "player_jwt_public_key_file" in values:
        field_name = f"{where}.player_jwt_public_key_file"
        pem = _read_secret_file(values.pop("player_jwt_public_key_file"), field_name)
        values["player_jwt_key"], values["player_jwt_algorithm"] = pem, _public_key_algorithm(pem, field_name)
    auth = AuthConfig(**values)
    if not auth.open and not auth.backend_keys and auth.player_jwt_key is None:
        raise ConfigError(f"{where}: names no credential; set backend_keys_file (or backend_keys) "
                          f"or player_jwt_secret_file (or player_jwt_public_key_file)")
    if auth.trusted_claims and auth.player_jwt_key is None:
        raise ConfigError(f"{where}.trusted_claims: needs player JWTs (player_jwt_secret_file or "
                          f"player_jwt_public_key_file)")
    return auth


def _public_key_algorithm(pem: str, where: str) -> str:
    # The algorithm follows from the key, never from a token's header (RS/HS confusion).
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    try:
        key = load_pem_public_key(pem.encode("utf-8"))
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ConfigError(f"{where}: not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return "ES256"
    raise ConfigError(f"{where}: expected an RSA or P-256 EC public key")


def _read_secret_file(path: Path, where: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{where}: cannot read {path}: {_why(error)}") from None
    if not text:
        raise ConfigError(f"{where}: {path} is empty")
    return text


def _refuse_placeholder(secret: str, where: str) -> None:
    folded = secret.lower()
    if any(mark in folded for mark in PLACEHOLDER_MARKS):
        raise ConfigError(f"{where}: holds a placeholder left from an example; set a real secret")


def _refuse_short(secret: str, where: str, minimum: int) -> None:
    if len(secret.encode("utf-8")) < minimum:
        raise ConfigError(f"{where}: a secret must be at least {minimum} characters long")


# --- [webhooks] (docs/WEBHOOKS.md) ---

# Types of the backfill events added beside EVENT_TYPES; any "backfill." type is accepted so the
# two features do not depend on each other's lists.
WEBHOOK_TYPE_PREFIXES = ("ticket.", "match.", "backfill.")
WEBHOOK_EVENT_NAME = re.compile(r"[a-z_]+\.(?:[a-z_]+|\*)")


def _toml_url(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected an http:// or https:// URL")
    url = value.strip()
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https"):
        raise ConfigError(f"{where}: expected an http:// or https:// URL, got scheme {parsed.scheme or '(none)'!r}")
    if not parsed.hostname:
        raise ConfigError(f"{where}: no host in {url!r}")
    try:
        parsed.port  # raises on a bad port
    except ValueError:
        raise ConfigError(f"{where}: bad port in {url!r}") from None
    if parsed.username or parsed.password:
        # The URL is shown in logs and /admin/status: credentials belong in the signature.
        raise ConfigError(f"{where}: must not hold a user or password (receivers check the signature)")
    if parsed.fragment:
        raise ConfigError(f"{where}: must not hold a #fragment")
    return url


def _toml_event_types(where: str, value: Any) -> tuple[str, ...]:
    from mmserver.store.events import EVENT_TYPES  # the store imports this module

    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a non-empty list of event types (\"ticket.assigned\", \"match.*\", ...)")
    for name in value:
        known = name in EVENT_TYPES or (
            WEBHOOK_EVENT_NAME.fullmatch(name) is not None
            and (name.endswith(".*") and name[:-1] in WEBHOOK_TYPE_PREFIXES or name.startswith("backfill.")))
        if not known:
            raise ConfigError(f"{where}: unknown event type {name!r} (known: {', '.join(EVENT_TYPES)}, "
                              f"backfill.*, or a prefix such as \"ticket.*\")")
    return tuple(dict.fromkeys(value))


_WEBHOOK_KEYS: dict[str, Callable[[str, Any], Any]] = dict(
    url=_toml_url,
    secret_file=_toml_path,
    events=_toml_event_types,
    max_attempts=_toml_int(1),
    timeout_s=_toml_positive,
    backoff_initial_s=_toml_positive,
    backoff_max_s=_toml_positive,
    max_dead_letters=_toml_int(100),
)


def _parse_webhooks(table: Any, where: str) -> WebhooksConfig:
    if isinstance(table, dict) and "secret" in table:
        # Only a file: an inline secret ends up in version control with the rest of the file.
        raise ConfigError(f"{where}: set secret_file (a file holding the signing secret), not secret")
    values = _parse_table(table, _WEBHOOK_KEYS, where)
    for key in ("url", "secret_file"):
        if key not in values:
            raise ConfigError(f"{where}: missing key {key!r}")
    secret = _read_secret_file(values.pop("secret_file"), f"{where}.secret_file")
    _refuse_placeholder(secret, f"{where}.secret_file")
    _refuse_short(secret, f"{where}.secret_file", MIN_SECRET_CHARS)
    webhooks = WebhooksConfig(secret=secret, **values)
    if webhooks.backoff_max_s < webhooks.backoff_initial_s:
        raise ConfigError(f"{where}: backoff_max_s ({webhooks.backoff_max_s:g}) is below backoff_initial_s "
                          f"({webhooks.backoff_initial_s:g})")
    return webhooks
