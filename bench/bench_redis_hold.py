"""How long one replica's tick holds the shared Redis from every other client of it.

Redis runs one command or script at a time; while a tick's script runs, every other request to
that Redis waits, from every replica: creations, polls, accepts, other ticks. On a real
redis-server (append-only file on), filled through the store's own create script, two ticks:

- 5v5-alloc: a 5v5 mode without a ready check and 12,000 static servers, the first tick over
  the full queue: it claims nearly every ticket and gives every match a server in that tick
  (claim and allocation scripts);
- 5v5-rules-steady: bench_rules.py's mode with roles, rules and latencies under a zero MMR
  window, the first tick over the full queue: nothing matches, every ticket gets its
  explanation (the explanations' first write, why.lua).

For each: the tick's time, and its allocation phase alone (the phase's wall time, the
allocation scripts' time in Redis and their calls); what another client waited (RedisWaits: a process of its own pings
every millisecond: the longest wait, p99, waits over 20 ms); and Redis's own SLOWLOG (every
command over 1 ms): the longest run of each script by name and of other commands. Whether Redis
rewrote its append-only file during the tick is said too: a rewrite makes the waits longer
(bench_rules.py, docs/PERFORMANCE.md "The tick and the append-only file's rewrite");
--aof-rewrite-first rewrites the file before each tick instead.

    .venv/bin/python bench/bench_redis_hold.py [--count 100000] [--scenarios 5v5-alloc,5v5-rules-steady]
                                               [--aof-rewrite-first]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import AofRewrites, RedisServer, RedisWaits, Report, fill_queue, rewrite_aof  # noqa: E402

import bench_rules  # noqa: E402
from mmserver.config import ModeConfig, ServersConfig  # noqa: E402
from mmserver.shutdown import Shutdown  # noqa: E402
from mmserver.store import Store  # noqa: E402
from mmserver.store.scripts import NAMES, Scripts  # noqa: E402
from mmserver.ticker import Ticker  # noqa: E402

SQUAD = ModeConfig("squad", team_size=5, teams=2, accept_timeout_s=0, ticket_ttl_s=7200)
STATIC = tuple(f"10.{i // 250}.{i % 250}.1:7777" for i in range(12_000))


def _scenario(name: str):
    """(modes for the fill, modes for the tick, servers, regions, profile)."""
    if name == "5v5-alloc":
        return {SQUAD.name: SQUAD}, {SQUAD.name: SQUAD}, ServersConfig(static=STATIC), (), None
    mode = bench_rules.RULES_MODE
    frozen = dataclasses.replace(mode, mmr_window=0.0, mmr_window_growth_per_s=0.0, mmr_window_max=0.0)
    return {mode.name: mode}, {mode.name: frozen}, ServersConfig(), bench_rules.REGIONS, bench_rules.rules_profile


def _longest(client) -> dict:
    """Longest SLOWLOG entry in ms per script name (EVALSHA) or command name."""
    names = {Scripts(client)._sha(name): name for name in NAMES}
    longest: dict[str, float] = {}
    for entry in client.slowlog_get(1_000_000):
        command = entry["command"]
        parts = (command.decode() if isinstance(command, bytes) else command).split()
        if not parts:
            continue
        what = parts[0].upper()
        if what == "EVALSHA" and len(parts) > 1:
            what = f"{names.get(parts[1], parts[1][:8])}.lua"
        longest[what] = max(longest.get(what, 0.0), entry["duration"] / 1000)
    return dict(sorted(longest.items(), key=lambda kv: -kv[1]))


def _time_allocation(ticker: Ticker, client) -> dict:
    """Times the tick's allocation phase (filled in as it ends): its wall time, and the
    allocation scripts' own time and calls in Redis (commandstats, reset as the phase starts,
    so the claims before it are not counted)."""
    figures: dict = {}
    allocate = ticker._allocate

    def timed(counts):
        client.config_resetstat()
        started = time.perf_counter()
        try:
            return allocate(counts)
        finally:
            figures["allocation_s"] = round(time.perf_counter() - started, 3)
            stat = client.info("commandstats").get("cmdstat_evalsha", {})
            figures["allocation_scripts_s"] = round(stat.get("usec", 0) / 1e6, 3)
            figures["allocation_calls"] = stat.get("calls", 0)

    ticker._allocate = timed
    return figures


def measure(redis_server: RedisServer, scenario: str, count: int, rewrite_first: bool = False) -> dict:
    fill_modes, modes, servers, regions, profile = _scenario(scenario)
    client = redis_server.client(decode_responses=True, socket_timeout=None)
    client.flushall()
    mode = next(iter(modes))
    fill_queue(redis_server.url, fill_modes, mode, count, prefix=f"{scenario}-", profile=profile, regions=regions)
    store = Store(client, modes, servers, regions=regions)
    store.allocate(1)  # the static pool seeded before the measured tick (nothing waits yet)
    client.config_set("slowlog-log-slower-than", 1000)
    client.config_set("slowlog-max-len", 1_000_000)
    rewritten = rewrite_aof(client) if rewrite_first else False
    client.slowlog_reset()
    ticker = Ticker(store, modes, shutdown=Shutdown(), regions=regions)
    allocation = _time_allocation(ticker, client)
    with RedisWaits(redis_server.url) as waits, AofRewrites(client) as rewrites:
        started = time.perf_counter()
        result = ticker.tick()
        tick_s = time.perf_counter() - started
    row = {"scenario": scenario, "queued": count, "tick_s": round(tick_s, 3), **allocation,
           "matches_claimed": result.matches_claimed, "allocated": result.allocated,
           "others_waited": waits.summary(), "longest_ms": _longest(client),
           "aof_rewrite_first": rewritten, "aof_rewrite_during_tick": rewrites.during}
    client.config_set("slowlog-log-slower-than", 10000)
    client.slowlog_reset()
    client.flushall()
    client.close()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--scenarios", default="5v5-alloc,5v5-rules-steady")
    parser.add_argument("--aof-rewrite-first", action="store_true",
                        help="rewrite the append-only file before each tick (see bench_rules.py)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    report = Report("redis_hold", vars(args) | {"out": None})
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        redis_server = RedisServer(Path(directory)).start()
        try:
            for scenario in args.scenarios.split(","):
                row = measure(redis_server, scenario, args.count, args.aof_rewrite_first)
                rows.append(row)
                waited = row["others_waited"]
                top = ", ".join(f"{name} {ms:.1f}" for name, ms in list(row["longest_ms"].items())[:4])
                print(f"{scenario:<17} {row['queued']:>8,} tickets, tick {row['tick_s']:.2f} s "
                      f"(claimed {row['matches_claimed']:,}, allocated {row['allocated']:,}: allocation "
                      f"{row['allocation_s']:.2f} s, its scripts {row['allocation_scripts_s']:.2f} s in "
                      f"{row['allocation_calls']} calls); others waited: "
                      f"longest {waited['max_ms']} ms, p99 {waited['p99_ms']} ms, {waited['over_20ms']} over 20 ms "
                      f"of {waited['pings']:,} pings; longest in Redis (ms): {top}; append-only file rewritten "
                      f"during the tick: {'yes' if row['aof_rewrite_during_tick'] else 'no'}", flush=True)
        finally:
            redis_server.stop()
    report["results"] = rows
    report.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
