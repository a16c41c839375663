"""What a configuration is: the `Config` object and its tables, as frozen values.

Built once at start (settings.py from flags and environment, file.py from the TOML file) and
handed to the components, which never read os.environ or the file themselves.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from mmserver.matchmaking.rules import Latency, Rule

REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel")
DEMO_ACCEPT_TIMEOUT_S = 60.0
# With no server token configured and a loopback public listener, the dedicated-server
# endpoints take this one, so the README's walk-through works on a plain `make run`.
DEMO_SERVER_TOKEN = "demo-server-token"
# Secrets left as shipped in an example file: refused at start wherever a secret is read.
PLACEHOLDER_MARKS = ("change-me", "changeme", "change_me", "replace-me", "replace_me", "replaceme",
                     "placeholder", "your-secret", "your_secret")
MIN_SECRET_CHARS = 16
MIN_JWT_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash
TRUSTABLE_CLAIMS = ("mmr", "region")  # http/access.py checks each one's type
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

    def party_problem(self, player_id: str, party: Sequence[str]) -> str | None:
        """Why `party` (the other members, beside `player_id`) cannot queue in this mode, in
        the words a client sees; None when it can. The one place these rules live."""
        if len(party) > self.team_size - 1:
            return (f"A party in mode {self.name!r} holds at most {self.team_size - 1} other "
                    f"player(s) (team size {self.team_size}).")
        if player_id in party:
            return "'party' lists the other members only, not the player themself."
        if len(set(party)) != len(party):
            return "'party' lists a player twice."
        return None


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
