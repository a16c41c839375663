"""End-to-end: time from ticket creation to assignment, for a steady arrival rate.

The real `mmserver` command on a real redis-server; a 1v1 mode without a ready check (so no
client has to accept) and a static pool of servers large enough for every match. Tickets
arrive at a steady rate from bench/loadgen.py (its own process); each client creates its
ticket and long-polls it until it is assigned. Two figures per ticket: the client's (from
sending the create to reading the assignment) and the server's (enqueued_at to the ticket's
last update, both stamped by Redis). The tick period (500 ms by default, as in production)
bounds the wait from below: a ticket waits on average half a period for the next tick.

    .venv/bin/python bench/bench_e2e.py [--rate 100] [--seconds 20] [--rounds 3] [--tick-ms 500]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RedisServer, Report, median, mmserver, run_loadgen, static_servers, write_config,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="tickets created per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tick-ms", type=int, default=500)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    report = Report("e2e", vars(args) | {"out": None})
    rows = []
    matches = int(args.rate * args.seconds * args.rounds / 2) + 16
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        redis_server = RedisServer(directory / "redis").start()
        config = write_config(
            directory / "mm.toml",
            {"duel": {"team_size": 1, "teams": 2, "accept_timeout_s": 0, "mmr_window": 100,
                      "mmr_window_growth_per_s": 20, "mmr_window_max": 1000, "ticket_ttl_s": 300}},
            {"token": "bench-server-token", "static": static_servers(matches)},
        )
        server = mmserver(directory / "mm", redis_server.url, env={
            "MMSERVER_CONFIG": str(config),
            "MMSERVER_TICK_INTERVAL_MS": str(args.tick_ms),
            # Below redis-py's default pool of 100 connections (see docs/PERFORMANCE.md).
            "MMSERVER_HTTP_THREADS": "96",
            "MMSERVER_MAX_LONGPOLLS": "80",
        })
        try:
            server.start().wait_ready()
            for r in range(args.rounds):
                result = run_loadgen(["e2e", "--url", server.url, "--rate", str(args.rate),
                                      "--duration", str(args.seconds), "--prefix", f"r{r}"],
                                     timeout=args.seconds + 90)
                result["round"] = r
                rows.append(result)
                client, srv = result["client_ms"], result["server_ms"]
                print(f"round {r}: {result['assigned']}/{result['tickets']} assigned at "
                      f"{result['arrival_per_s']}/s  client p50 {client.get('p50')} p99 {client.get('p99')} ms  "
                      f"server p50 {srv.get('p50')} p99 {srv.get('p99')} ms  failures {result['failures']}",
                      flush=True)
            if server.process.poll() is not None:
                raise RuntimeError(f"mmserver exited during the run:\n{server.output()[-2000:]}")
        finally:
            server.kill()
            redis_server.stop()
    good = [row for row in rows if row["client_ms"]]
    summary = {
        "client_p50_ms_median": median([row["client_ms"]["p50"] for row in good]),
        "client_p99_ms_median": median([row["client_ms"]["p99"] for row in good]),
        "server_p50_ms_median": median([row["server_ms"]["p50"] for row in good]),
        "server_p99_ms_median": median([row["server_ms"]["p99"] for row in good]),
        "assigned": sum(row["assigned"] for row in rows),
        "tickets": sum(row["tickets"] for row in rows),
    }
    report["rounds"] = rows
    report["summary"] = summary
    print(f"summary: {summary}")
    report.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
