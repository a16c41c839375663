"""The lean connection pool against redis-py's own, interleaved (docs/PERFORMANCE.md).

Both clients come from `redis_client.connect` on the same redis-server: the same connection
class (kernel socket timeouts, stale-reply guard) and the same Store; only the pool differs.
`lean`: `LeanConnectionPool` (the readiness poll at checkout only on a connection idle for
more than 0.1 s); `plain`: redis-py's `ConnectionPool` (a poll at every checkout). Each round
creates `--creates` tickets through Store.create_ticket from `--threads` threads with one pool,
then the other, the order flipped every round; medians of the rounds are reported.

    .venv/bin/python bench/bench_pool.py [--rounds 9] [--creates 6000] [--threads 8 1]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.bench_store import MODES, create_many  # noqa: E402
from mmserver.config import ServersConfig  # noqa: E402
from mmserver.redis_client import connect  # noqa: E402
from mmserver.redis_pool import LeanConnectionPool  # noqa: E402
from mmserver.redis_replies import GuardedConnectionPool  # noqa: E402
from mmserver.store import Store  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402


def client_for(kind: str, url: str) -> redis.Redis:
    client = connect(url)
    assert isinstance(client.connection_pool, LeanConnectionPool)
    if kind == "lean":
        return client
    pool = client.connection_pool
    plain = GuardedConnectionPool(connection_class=pool.connection_class, **pool.connection_kwargs)
    return redis.Redis.from_pool(plain)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--creates", type=int, default=6000)
    parser.add_argument("--threads", type=int, nargs="+", default=[8, 1])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        admin = server.client()
        results: dict[str, dict[str, list[float]]] = {}
        try:
            for threads in args.threads:
                rates: dict[str, list[float]] = {"lean": [], "plain": []}
                for round_ in range(args.rounds):
                    order = ("lean", "plain") if round_ % 2 == 0 else ("plain", "lean")
                    for kind in order:
                        admin.flushall()
                        client = client_for(kind, server.url)
                        store = Store(client, MODES, ServersConfig(), retention_s=60)
                        create_many(store, 200, threads, f"warm{kind}")  # connections open
                        rate = create_many(store, args.creates, threads, f"{kind}{round_}-")
                        client.close()
                        rates[kind].append(rate)
                        load = os.getloadavg()[0]
                        print(f"threads={threads} round={round_ + 1} {kind}: {rate:,.0f}/s "
                              f"(load {load:.1f})", flush=True)
                lean, plain = statistics.median(rates["lean"]), statistics.median(rates["plain"])
                print(f"threads={threads}: median lean {lean:,.0f}/s, plain {plain:,.0f}/s, "
                      f"lean/plain {lean / plain:.3f}", flush=True)
                results[str(threads)] = rates
        finally:
            admin.close()
            server.stop()
    if args.out:
        args.out.write_text(json.dumps({"rounds": args.rounds, "creates": args.creates,
                                        "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
