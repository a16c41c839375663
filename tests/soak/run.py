"""A soak run: a real redis-server, a real `mmserver`, the load of load.py, and the process's
resident memory sampled all along.

`soak(directory, duration_s, rate, longpolls)` returns a Report; `Report.passed` is the verdict:
zero errors, every operation exercised, and memory flat (the mean RSS of the last third of the
run at most `RSS_GROWTH_LIMIT` above the mean of the first third).
"""
from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.process.harness import MMServer, request
from tests.redis_server import RedisServer
from tests.soak.load import HOLD_MODE, MATCH_MODE, Load, Stats

SERVER_TOKEN = "soak-server-token"
ADMIN_TOKEN = "soak-admin-token"
RSS_GROWTH_LIMIT = 0.10  # last third vs first third
RSS_SAMPLE_S = 1.0
# Operations every healthy run must have exercised (long-polls only when asked for).
REQUIRED_OPS = ("create", "poll", "accept", "cancel", "finish", "heartbeat")

CONFIG_TOML = f"""
[modes.{MATCH_MODE}]
team_size = 1
teams = 2
accept_timeout_s = 10

[modes.{HOLD_MODE}]
team_size = 100
teams = 2

[servers]
token = "{SERVER_TOKEN}"
heartbeat_ttl_s = 15
"""


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class RssSampler:
    def __init__(self, pid: int, interval_s: float) -> None:
        self._pid = pid
        self._interval_s = interval_s
        self.samples: list[tuple[float, int]] = []  # (seconds since start, bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-rss", daemon=True)

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic() - self._started, rss_bytes(self._pid)))
            except (OSError, RuntimeError):
                return  # the process is gone: the run reports it
            self._stop.wait(self._interval_s)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class Report:
    duration_s: float
    rate: float
    longpolls: int
    stats: Stats
    rss: list[tuple[float, int]]
    redis_memory: tuple[int, int]  # used_memory before and after
    service_alive: bool
    service_errors: list[str] = field(default_factory=list)  # ERROR lines mmserver logged

    @property
    def requests(self) -> int:
        return sum(count for (op, _status), count in self.stats.statuses.items() if op != "longpoll")

    @property
    def errors(self) -> int:
        return sum(self.stats.errors.values())

    def rss_thirds(self) -> tuple[float, float]:
        values = [rss for _t, rss in self.rss]
        third = max(1, len(values) // 3)
        return statistics.mean(values[:third]), statistics.mean(values[-third:])

    @property
    def rss_growth(self) -> float:
        first, last = self.rss_thirds()
        return (last - first) / first

    def rss_slope_mib_per_hour(self) -> float:
        """Least-squares slope of RSS over the last two thirds (after the warm-up): what
        "flat" hides if a slow leak is there."""
        tail = self.rss[len(self.rss) // 3:]
        if len(tail) < 2:
            return 0.0
        times = [t for t, _ in tail]
        values = [rss / 2**20 for _, rss in tail]
        return statistics.linear_regression(times, values).slope * 3600

    @property
    def missing_ops(self) -> list[str]:
        done = {op for (op, status) in self.stats.statuses}
        wanted = REQUIRED_OPS + (("longpoll",) if self.longpolls else ())
        return [op for op in wanted if op not in done]

    @property
    def passed(self) -> bool:
        return (self.errors == 0 and self.service_alive and not self.service_errors
                and not self.missing_ops and len(self.rss) >= 3 and self.rss_growth <= RSS_GROWTH_LIMIT)

    def lines(self) -> list[str]:
        stats = self.stats
        out = [f"soak: {self.duration_s:g} s at {self.rate:g} requests/s with {self.longpolls} long-polls held open",
               f"requests: {self.requests} ({self.requests / self.duration_s:.1f}/s achieved), "
               f"errors: {self.errors}, conflicts (409 races): {sum(stats.conflicts.values())}, "
               f"late slots: {stats.late_slots}",
               f"{'operation':<10} {'count':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  statuses"]
        for op in sorted(stats.latencies):
            values = stats.latencies[op]
            codes = ", ".join(f"{status}x{count}" for (name, status), count in sorted(stats.statuses.items())
                              if name == op)
            out.append(f"{op:<10} {len(values):>7} {percentile(values, 0.5) * 1000:>8.1f} "
                       f"{percentile(values, 0.99) * 1000:>8.1f} {max(values) * 1000:>8.1f}  {codes}")
        if self.longpolls:
            out.append(f"long-polls answered early: {stats.longpoll_early}")
        out.append("ticket outcomes seen: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.outcomes.items())))
        if self.rss:
            first, last = self.rss_thirds()
            peak = max(rss for _t, rss in self.rss)
            out.append(f"mmserver RSS: first third {first / 2**20:.1f} MiB, last third {last / 2**20:.1f} MiB "
                       f"({self.rss_growth:+.1%}), peak {peak / 2**20:.1f} MiB, {len(self.rss)} samples; "
                       f"slope over the last two thirds {self.rss_slope_mib_per_hour():+.1f} MiB/h")
        before, after = self.redis_memory
        out.append(f"redis used_memory: {before / 2**20:.1f} MiB before, {after / 2**20:.1f} MiB after")
        for error, count in sorted(stats.errors.items()):
            out.append(f"ERROR {error}: {count}")
        out.extend(f"  sample: {line}" for line in stats.error_samples)
        out.extend(f"mmserver logged: {line}" for line in self.service_errors[:20])
        if self.missing_ops:
            out.append(f"operations never exercised: {', '.join(self.missing_ops)}")
        if not self.service_alive:
            out.append("mmserver is not running at the end of the run")
        out.append("PASS" if self.passed else "FAIL")
        return out


def soak(directory: Path, *, duration_s: float, rate: float, longpolls: int,
         longpoll_wait_s: float = 10.0, clients: int = 16) -> Report:
    directory = Path(directory)
    redis_server = RedisServer(directory / "redis").start()
    service: MMServer | None = None
    try:
        config = directory / "mmserver.toml"
        directory.mkdir(parents=True, exist_ok=True)
        config.write_text(CONFIG_TOML)
        service = MMServer(directory / "mmserver", redis_url=redis_server.url, env={
            "MMSERVER_CONFIG": str(config),
            "MMSERVER_ADMIN_TOKEN": ADMIN_TOKEN,
            # every held long-poll holds a worker thread; the rest serve the paced load
            "MMSERVER_HTTP_THREADS": str(longpolls + clients),
            "MMSERVER_MAX_LONGPOLLS": str(longpolls),
            "MMSERVER_TICK_INTERVAL_MS": "200",
            "MMSERVER_LOG_LEVEL": "WARNING",
        }).start().wait_ready()
        assert service.process is not None
        redis_client = redis_server.client()
        redis_before = int(redis_client.info("memory")["used_memory"])
        sampler = RssSampler(service.process.pid, RSS_SAMPLE_S)
        load = Load("127.0.0.1", service.port, rate=rate, longpolls=longpolls, server_token=SERVER_TOKEN,
                    clients=clients, longpoll_wait_s=longpoll_wait_s)
        sampler.start()
        stats = load.run(duration_s)
        sampler.stop()
        redis_after = int(redis_client.info("memory")["used_memory"])
        redis_client.close()
        alive = service.process.poll() is None and request(service.url + "/readyz").status == 200
        logged = [line for line in service.lines if " ERROR " in line or "Traceback" in line]
        return Report(duration_s, rate, longpolls, stats, sampler.samples, (redis_before, redis_after),
                      alive, logged)
    finally:
        if service is not None:
            service.kill()
        redis_server.stop()
