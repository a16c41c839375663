"""Notification latency: from a match's commit to the long-poll's answer, hundreds of long-polls open.

The real `mmserver` command on a real redis-server, default worker threads (a waiting long-poll
holds none). bench/loadgen.py (its own process) creates `idle + probes` tickets with MMRs 10
apart (the mode's window is a fixed 1: nothing matches) and opens a long-poll on each. Then
it creates a partner for each probe ticket at a steady rate; the next tick matches the pair
and the claim script publishes both ids on mm:events from inside the script, that is at the
commit. The load generator's own subscriber records when each id is published, its long-poll
when the answer arrives; both times are CLOCK_MONOTONIC, one clock for every process.

Also measured: a burst, every probe's partner created at once, so that one tick wakes them
all together (the worst case for the waiters and the thread pool).

    .venv/bin/python bench/bench_notify.py [--idle 300] [--probes 200] [--rate 40] [--rounds 3]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RedisServer, Report, median, mmserver, run_loadgen, write_config  # noqa: E402
from tests.waiting import wait_until  # noqa: E402


def wait_for_no_long_polls(server, timeout: float = 40.0) -> int:
    """Long-polls still waiting in the server after a run (0 expected once the run cancelled
    its idle tickets): the next run must start with none left over."""
    def long_polls() -> int:
        return server.admin("/admin/status").json()["workers"]["http"]["long_polls"]

    return 0 if wait_until(lambda: long_polls() == 0, timeout, interval=0.2) else long_polls()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=300, help="long-polls open throughout")
    parser.add_argument("--probes", type=int, default=200, help="long-polls whose ticket is matched")
    parser.add_argument("--rate", type=float, default=40.0, help="partners per second")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tick-ms", type=int, default=100)
    parser.add_argument("--no-burst", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    report = Report("notify", vars(args) | {"out": None})
    polls = args.idle + args.probes
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        redis_server = RedisServer(directory / "redis").start()
        config = write_config(directory / "mm.toml", {"duel": {
            "team_size": 1, "teams": 2, "accept_timeout_s": 10, "mmr_window": 1,
            "mmr_window_growth_per_s": 0, "mmr_window_max": 1, "ticket_ttl_s": 300}})
        server = mmserver(directory / "mm", redis_server.url, env={
            "MMSERVER_CONFIG": str(config),
            "MMSERVER_TICK_INTERVAL_MS": str(args.tick_ms),
            "MMSERVER_MAX_LONGPOLLS": str(polls + 8),
        })
        try:
            server.start().wait_ready()
            kinds = [("steady", args.rate)] + ([] if args.no_burst else [("burst", 0.0)])
            for r in range(args.rounds):
                for kind, rate in kinds:
                    band = len(rows) * (10 * polls + 100)  # each run's MMRs apart from the others'
                    if band + 10 * polls > 100_000:
                        raise SystemExit("too many runs for the MMR range: fewer rounds or polls")
                    result = run_loadgen(["notify", "--url", server.url, "--redis-url", redis_server.url,
                                          "--idle", str(args.idle), "--probes", str(args.probes),
                                          "--rate", str(rate), "--band", str(band),
                                          "--prefix", f"r{r}{kind}"], timeout=180)
                    result.update(round=r, kind=kind, long_polls_left=wait_for_no_long_polls(server))
                    rows.append(result)
                    lat = result["latency_ms"]
                    print(f"round {r} {kind:<6} open {result['long_polls_open']}  answered {result['answered']}"
                          f"/{result['probes']}  p50 {lat.get('p50')} ms  p99 {lat.get('p99')} ms  "
                          f"max {lat.get('max')} ms  errors {result['errors']}", flush=True)
            if server.process.poll() is not None:
                raise RuntimeError(f"mmserver exited during the run:\n{server.output()[-2000:]}")
        finally:
            server.kill()
            redis_server.stop()
    summary = {}
    for kind in ("steady", "burst"):
        mine = [row for row in rows if row["kind"] == kind]
        timed = [row for row in mine if row["latency_ms"]]
        if mine:
            # A run whose probes were all missed has no latencies, but its misses count.
            summary[kind] = {
                "p50_ms_median": median([row["latency_ms"]["p50"] for row in timed]) if timed else None,
                "p99_ms_median": median([row["latency_ms"]["p99"] for row in timed]) if timed else None,
                "max_ms_max": max(row["latency_ms"]["max"] for row in timed) if timed else None,
                "missing": sum(row["missing"] for row in mine),
                "errors": sum(sum(row["errors"].values()) for row in mine),
            }
    report["rounds"] = rows
    report["summary"] = summary
    report["target"] = "p99 <= 50 ms (steady arrivals)"
    print(f"summary: {summary}")
    report.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
