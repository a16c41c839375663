"""The timeouts a chaos run gives mmserver, and the files and environment derived from them.

Everything is small so that every deadline of SPEC.md passes many times within a run: ready
checks of 2 s, tickets expiring 12 s after their last read, allocations timing out after 3 s, a
subscriber that gives up on Redis within a few seconds (then the replica exits 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SERVER_TOKEN = "chaos-server-token"
WEBHOOK_SECRET = "chaos-webhook-secret-0123456789"
ADMIN_TOKEN = "chaos-admin-token"
MODES = ("duel", "squad")  # duel: 1v1; squad: 2v2 with parties of two
TEAM_SIZES = {"duel": 1, "squad": 2}


@dataclass(frozen=True)
class ChaosSettings:
    tick_interval_ms: int = 100
    accept_timeout_s: float = 2.0
    ticket_ttl_s: float = 12.0
    allocation_timeout_s: float = 3.0
    heartbeat_ttl_s: float = 2.0
    reconnect_attempts: int = 3
    backoff_initial_ms: int = 200
    backoff_max_ms: int = 800
    shutdown_timeout_s: float = 5.0
    static_servers: tuple[str, ...] = ("127.0.0.1:7001", "127.0.0.1:7002")
    restart_delay_s: float = 1.0  # systemd RestartSec
    # Webhooks to the run's receiver: retried quickly and never given up within a run, so that
    # every event must arrive (the dead-letter path has its own tests).
    webhook_url: str | None = None
    webhook_timeout_s: float = 2.0
    extra_env: dict = field(default_factory=dict)

    @property
    def reconnect_budget_s(self) -> float:
        """Roughly how long a subscriber keeps retrying a refused connection before exit 1."""
        total, delay = 0.0, self.backoff_initial_ms / 1000
        for _ in range(self.reconnect_attempts):
            total += min(delay, self.backoff_max_ms / 1000)
            delay *= 2
        return total

    @property
    def settle_s(self) -> float:
        """After traffic stops: the longest chain of deadlines a ticket can still go through
        (queued until its TTL, matched at the last moment, ready check, allocation), plus a
        margin for the ticks and a silent server's heartbeat TTL."""
        return self.ticket_ttl_s + self.accept_timeout_s + self.allocation_timeout_s + self.heartbeat_ttl_s + 5.0

    def config_toml(self) -> str:
        statics = ", ".join(f'"{a}"' for a in self.static_servers)
        modes = ""
        for name, team_size in TEAM_SIZES.items():
            modes += (
                f"[modes.{name}]\n"
                f"team_size = {team_size}\n"
                "teams = 2\n"
                f"accept_timeout_s = {self.accept_timeout_s}\n"
                "mmr_window = 200\n"
                "mmr_window_growth_per_s = 200\n"
                "mmr_window_max = 2000\n"
                f"ticket_ttl_s = {self.ticket_ttl_s}\n\n"
            )
        return modes + (
            "[servers]\n"
            f'token = "{SERVER_TOKEN}"\n'
            f"static = [{statics}]\n"
            f"heartbeat_ttl_s = {self.heartbeat_ttl_s}\n"
            f"allocation_timeout_s = {self.allocation_timeout_s}\n"
        )

    def webhooks_toml(self, secret_file: Path) -> str:
        if self.webhook_url is None:
            return ""
        return (
            "\n[webhooks]\n"
            f'url = "{self.webhook_url}"\n'
            f'secret_file = "{secret_file}"\n'
            "max_attempts = 1000\n"
            f"timeout_s = {self.webhook_timeout_s}\n"
            "backoff_initial_s = 0.2\n"
            "backoff_max_s = 1.0\n"
        )

    def write_config(self, directory: Path) -> Path:
        path = Path(directory) / "mmserver.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        secret_file = Path(directory) / "webhook.secret"
        secret_file.write_text(WEBHOOK_SECRET)
        path.write_text(self.config_toml() + self.webhooks_toml(secret_file))
        return path

    def replica_env(self, config_path: Path) -> dict[str, str]:
        env = {
            "MMSERVER_CONFIG": str(config_path),
            "MMSERVER_ADMIN_TOKEN": ADMIN_TOKEN,
            "MMSERVER_TICK_INTERVAL_MS": str(self.tick_interval_ms),
            "MMSERVER_REDIS_RECONNECT_ATTEMPTS": str(self.reconnect_attempts),
            "MMSERVER_REDIS_BACKOFF_INITIAL_MS": str(self.backoff_initial_ms),
            "MMSERVER_REDIS_BACKOFF_MAX_MS": str(self.backoff_max_ms),
            "MMSERVER_SHUTDOWN_TIMEOUT_S": str(self.shutdown_timeout_s),
            "MMSERVER_LOG_LEVEL": "INFO",
        }
        env.update(self.extra_env)
        return env
