"""Matchmaker tick time at 1,000 to 1,000,000 queued tickets, 1v1 and 5v5 with parties.

A real redis-server (append-only file on, as the embedded Redis runs) is filled through the
store's own create script, then mmserver's Ticker runs against it. For each queue size:

- idle tick: the same queue under a zero MMR window, so nothing matches: the cost every tick
  pays for a queue that big (deadlines, read the queue, propose, nothing to claim). Median of
  a few ticks;
- matching tick: the real rules (window 100, +20/s, max 1000; ready check on), first tick over
  the full queue, so nearly every ticket is matched and claimed in that one tick. Tickets
  matched per second = tickets that left the queue / tick time;
- phases of a tick timed apart on the same queue: read_queue (one ZRANGE and parsing) and
  propose_matches (pure Python), so the rest (claims, locks, deadlines) is the difference;
- Redis's side of the matching tick: the time its scripts ran (INFO commandstats, EVALSHA:
  the claims, mostly) and its process CPU (INFO cpu).

    .venv/bin/python bench/bench_tick.py [--sizes 1000,10000,100000,1000000] [--scenarios 1v1,5v5-parties]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import AofRewrites, RedisServer, Report, fill_queue, median, rewrite_aof  # noqa: E402

from mmserver.config import ModeConfig, ServersConfig  # noqa: E402
from mmserver.matchmaking import MatchRules, propose_matches  # noqa: E402
from mmserver.shutdown import Shutdown  # noqa: E402
from mmserver.store import Store, keys  # noqa: E402
from mmserver.ticker import Ticker  # noqa: E402

SCENARIOS = {
    "1v1": (ModeConfig("duel", team_size=1, teams=2, ticket_ttl_s=7200), False),
    "5v5-parties": (ModeConfig("team", team_size=5, teams=2, ticket_ttl_s=7200), True),
}


def measure(redis_server: RedisServer, scenario: str, count: int, idle_rounds: int, rewrite_first: bool = False) -> dict:
    mode, parties = SCENARIOS[scenario]
    modes = {mode.name: mode}
    # FLUSHALL of a million tickets takes seconds: no socket timeout on this client.
    client = redis_server.client(decode_responses=True, socket_timeout=None)
    client.flushall()
    memory_before = int(client.info("memory")["used_memory"])
    fill_rate = fill_queue(redis_server.url, modes, mode.name, count, parties=parties, prefix=f"{scenario}-")
    queue = keys.queue(mode.name, None)
    queued = client.zcard(queue)
    memory = int(client.info("memory")["used_memory"]) - memory_before
    store = Store(client, modes, ServersConfig())

    frozen = dataclasses.replace(mode, mmr_window=0.0, mmr_window_growth_per_s=0.0, mmr_window_max=0.0)
    idle_ticker = Ticker(store, {mode.name: frozen}, shutdown=Shutdown())
    idle = []
    for _ in range(idle_rounds):
        result = idle_ticker.tick()
        idle.append(result.duration_s)
        if result.matches_claimed:
            raise RuntimeError("the idle tick matched tickets: the benchmark's data is wrong")

    reads, proposes = [], []
    for _ in range(idle_rounds):
        started = time.perf_counter()
        tickets = store.read_queue(mode.name, None)
        reads.append(time.perf_counter() - started)
        started = time.perf_counter()
        proposals = propose_matches(tickets, MatchRules.from_mode(mode), store.now())
        proposes.append(time.perf_counter() - started)

    # Redis's side of the matching tick: its scripts (the claims, mostly) and its process CPU.
    rewritten = rewrite_aof(client) if rewrite_first else False
    client.config_resetstat()
    cpu_before = client.info("cpu")
    with AofRewrites(client) as rewrites:
        result = Ticker(store, modes, shutdown=Shutdown()).tick()
    cpu_after = client.info("cpu")
    scripts_s = client.info("commandstats").get("cmdstat_evalsha", {}).get("usec", 0) / 1e6
    redis_cpu_s = sum(cpu_after[k] - cpu_before[k] for k in ("used_cpu_user", "used_cpu_sys"))
    left = client.zcard(queue)
    matched = queued - left
    row = {
        "scenario": scenario,
        "queued": queued,
        "fill_per_s": round(fill_rate),
        "redis_bytes_per_ticket": round(memory / queued, 1),
        "idle_tick_s": round(median(idle), 4),
        "read_queue_s": round(median(reads), 4),
        "propose_s": round(median(proposes), 4),
        "proposals": len(proposals),
        "matching_tick_s": round(result.duration_s, 4),
        "matching_tick_redis_scripts_s": round(scripts_s, 4),
        "matching_tick_redis_cpu_s": round(redis_cpu_s, 4),
        "aof_rewrite_first": rewritten,
        "aof_rewrite_during_tick": rewrites.during,
        "matches_claimed": result.matches_claimed,
        "claim_conflicts": result.claim_conflicts,
        "tickets_matched": matched,
        "tickets_matched_per_s": round(matched / result.duration_s) if result.duration_s else None,
        "idle_rounds": idle_rounds,
    }
    client.flushall()
    client.close()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--rounds", type=int, default=3, help="idle ticks per size (1 above 100,000)")
    parser.add_argument("--aof-rewrite-first", action="store_true",
                        help="rewrite the append-only file before each matching tick (see bench_rules.py)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    report = Report("tick", vars(args) | {"out": None})
    report["target"] = "a tick over 100,000 queued tickets under 1 s"
    rows = []
    print(f"{'scenario':<12} {'queued':>9} {'idle tick':>10} {'read':>8} {'propose':>8} "
          f"{'match tick':>11} {'its Redis scripts':>18} {'matched/s':>10} {'B/ticket':>9} {'AOF rewrite':>11}")
    with tempfile.TemporaryDirectory() as directory:
        redis_server = RedisServer(Path(directory)).start()
        try:
            for scenario in args.scenarios.split(","):
                for count in sizes:
                    row = measure(redis_server, scenario, count, args.rounds if count <= 100_000 else 1,
                                  args.aof_rewrite_first)
                    rows.append(row)
                    report["results"] = rows
                    report.write(args.out)  # after every size: a long run keeps what it measured
                    print(f"{scenario:<12} {row['queued']:>9,} {row['idle_tick_s']:>10.4f} {row['read_queue_s']:>8.4f} "
                          f"{row['propose_s']:>8.4f} {row['matching_tick_s']:>11.4f} "
                          f"{row['matching_tick_redis_scripts_s']:>18.4f} "
                          f"{row['tickets_matched_per_s'] or 0:>10,} {row['redis_bytes_per_ticket']:>9} "
                          f"{'during' if row['aof_rewrite_during_tick'] else 'none':>11}", flush=True)
        finally:
            redis_server.stop()
    report["results"] = rows
    report.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
