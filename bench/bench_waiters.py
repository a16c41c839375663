"""Waiting clients: thousands of long-polls held on one replica, what they cost the others.

The real `mmserver` command (default settings: 16 public worker threads) on a real
redis-server. bench/loadgen.py processes hold `--waiters` long-polls (`hold`, wait=`--wait`)
on tickets created once before the first round, so the queue the matcher sees is the same in
every round. Measured:

- creation throughput (loadgen `post`, closed loop) with and without the waiters held, in
  alternate rounds (the order flipped every round), as the ratio of the medians;
- memory per waiting client: the replica's RSS with every waiter parked minus its RSS just
  before they were opened, over their number (first round: later rounds reuse what the
  allocator kept from the round before, and read lower);
- notification latency with `--waiters` long-polls open (loadgen `notify`: `--probes` of them
  get matched, at a steady rate and in a burst), from the commit (Redis publishes from inside
  the script) to the answer, both on CLOCK_MONOTONIC;
- for comparison, the RSS of one idle thread with a `--thread-stack-kib` stack (the cost a
  design with one thread per waiter would pay at least), in a separate process.

    .venv/bin/python bench/bench_waiters.py [--waiters 5000] [--rounds 3] [--seconds 4]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    Report, RedisServer, finish_loadgen, median, mmserver, rss_kb, run_loadgen, start_loadgen, write_config,
)
from tests.waiting import wait_until  # noqa: E402


def long_polls(server) -> int:
    return server.admin("/admin/status").json()["workers"]["http"]["long_polls"]


def wait_for(server, check, timeout: float, what: str) -> float:
    """Seconds until `check(long-polls held by the server)` holds."""
    started = time.monotonic()

    def reached() -> bool:
        if check(long_polls(server)):
            return True
        if server.process.poll() is not None:
            raise RuntimeError(f"mmserver exited:\n{server.output()[-2000:]}")
        return False

    if not wait_until(reached, timeout, interval=0.1):
        raise RuntimeError(f"{what}: {long_polls(server)} long-polls after {timeout:.0f} s")
    return time.monotonic() - started


def thread_cost(count: int, stack_kib: int) -> dict:
    """RSS of `count` idle threads with a `stack_kib` stack each, blocked on an Event (run in a
    process of its own: `--thread-cost`)."""
    import os

    before = rss_kb(os.getpid())["VmRSS"]
    threading.stack_size(stack_kib * 1024)
    stop = threading.Event()
    threads = [threading.Thread(target=stop.wait, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    after = rss_kb(os.getpid())["VmRSS"]
    stop.set()
    return {"threads": count, "stack_kib": stack_kib, "rss_kib_per_thread": round((after - before) / count, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiters", type=int, default=5000, help="long-polls held (up to 10,000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of one creation run")
    parser.add_argument("--concurrency", type=int, default=16, help="creation clients")
    parser.add_argument("--wait", type=int, default=20, help="wait= of the held long-polls")
    parser.add_argument("--probes", type=int, default=200, help="notify: long-polls that get matched")
    parser.add_argument("--rate", type=float, default=40.0, help="notify: partners per second (steady)")
    parser.add_argument("--notify-rounds", type=int, default=1, help="0 to skip (needed above 5,000 waiters)")
    parser.add_argument("--tick-ms", type=int, default=500)
    parser.add_argument("--thread-stack-kib", type=int, default=256)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra environment variable for mmserver (e.g. MMSERVER_HTTP_THREADS=2016, "
                             "or PYTHONPATH=DIR to measure another checkout of the code)")
    parser.add_argument("--thread-cost", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.thread_cost:
        import json

        print(json.dumps(thread_cost(args.thread_cost, args.thread_stack_kib)))
        return 0
    report = Report("waiters", vars(args) | {"out": None})
    rounds: list[dict] = []
    notify: list[dict] = []
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        redis_server = RedisServer(directory / "redis").start()
        config = write_config(directory / "mm.toml", {"duel": {
            "team_size": 1, "teams": 2, "accept_timeout_s": 10, "mmr_window": 1,
            "mmr_window_growth_per_s": 0, "mmr_window_max": 1, "ticket_ttl_s": 600}})
        server = mmserver(directory / "mm", redis_server.url, env={
            "MMSERVER_CONFIG": str(config), "MMSERVER_TICK_INTERVAL_MS": str(args.tick_ms),
            **dict(item.split("=", 1) for item in args.env)})
        tickets = directory / "held.json"
        hold = ["hold", "--url", server.url, "--count", str(args.waiters), "--wait", str(args.wait),
                "--tickets", str(tickets), "--prefix", "held"]
        try:
            server.start().wait_ready()
            pid = server.process.pid
            # The held tickets, created once (MMRs far from the creation runs': never matched).
            run_loadgen([*hold, "--duration", "0"], timeout=300)

            def create(label: str) -> dict:
                return run_loadgen(["post", "--url", server.url, "--concurrency", str(args.concurrency),
                                    "--duration", str(args.seconds), "--prefix", label,
                                    "--mmr-range", "0,1000"], timeout=args.seconds + 60)

            for r in range(args.rounds):
                order = ("without", "with") if r % 2 == 0 else ("with", "without")
                for phase in order:
                    row: dict = {"round": r, "phase": phase}
                    if phase == "without":
                        row["long_polls"] = long_polls(server)
                        result = create(f"c{r}n")
                    else:
                        rss_before = rss_kb(pid)["VmRSS"]
                        holder = start_loadgen([*hold, "--duration", str(args.seconds + 120)])
                        try:
                            row["open_s"] = round(wait_for(server, lambda n: n >= args.waiters, 120,
                                                           "the waiters never all parked"), 2)
                            time.sleep(0.5)
                            row["rss_parked_kib"] = rss_kb(pid)["VmRSS"]
                            row["rss_before_kib"] = rss_before
                            row["rss_kib_per_waiter"] = round((row["rss_parked_kib"] - rss_before) / args.waiters, 2)
                            result = create(f"c{r}w")
                            row["long_polls"] = long_polls(server)
                        finally:
                            holder.kill()
                            finish = holder.communicate(timeout=30)  # noqa: F841 (reaped)
                        # Their connections are gone; the server answers each at its timeout.
                        wait_for(server, lambda n: n == 0, args.wait + 30, "the waiters never expired")
                    row.update(ok_per_s=result["ok_per_s"], statuses=result["statuses"], errors=result["errors"],
                               latency_ms=result["latency_ms"])
                    rounds.append(row)
                    print(f"round {r} {phase:<7} long-polls {row['long_polls']:>5}  {row['ok_per_s']:>7} creations/s"
                          + (f"  RSS +{row['rss_kib_per_waiter']} KiB/waiter" if phase == "with" else ""), flush=True)

            kinds = [("steady", args.rate), ("burst", 0.0)]
            for r in range(args.notify_rounds):
                for kind, rate in kinds:
                    # The held tickets sit at 50,000 + 5k: these (2 mod 10) are 2 or more
                    # apart, beyond the window of 1. A run's tickets are all matched or
                    # cancelled by its end. The MMR range (100,000) fits 5,000 of them.
                    band = 50_002
                    result = run_loadgen(["notify", "--url", server.url, "--redis-url", redis_server.url,
                                          "--idle", str(args.waiters - args.probes), "--probes", str(args.probes),
                                          "--rate", str(rate), "--band", str(band), "--prefix", f"n{r}{kind}",
                                          "--timeout", "120"], timeout=400)
                    result.update(round=r, kind=kind)
                    notify.append(result)
                    lat = result["latency_ms"]
                    print(f"notify {r} {kind:<6} open {result['long_polls_open']}  answered {result['answered']}"
                          f"/{result['probes']}  p50 {lat.get('p50')} ms  p99 {lat.get('p99')} ms  "
                          f"max {lat.get('max')} ms  errors {result['errors']}", flush=True)
                    wait_for(server, lambda n: n == 0, 60, "notify's long-polls never ended")
            report["rss_peak_kib"] = rss_kb(pid).get("VmHWM")
            if server.process.poll() is not None:
                raise RuntimeError(f"mmserver exited during the run:\n{server.output()[-2000:]}")
        finally:
            server.kill()
            redis_server.stop()
    threads = subprocess.run([sys.executable, __file__, "--thread-cost", str(max(1, min(args.waiters, 5000))),
                              "--thread-stack-kib", str(args.thread_stack_kib)],
                             capture_output=True, text=True, timeout=120, check=True)
    import json

    thread_row = json.loads(threads.stdout.strip().splitlines()[-1])
    without = median([row["ok_per_s"] for row in rounds if row["phase"] == "without"])
    with_waiters = median([row["ok_per_s"] for row in rounds if row["phase"] == "with"])
    held = [row for row in rounds if row["phase"] == "with"]
    summary = {
        "waiters": args.waiters,
        "creations_per_s_without": without,
        "creations_per_s_with": with_waiters,
        "ratio_with_to_without": round(with_waiters / without, 3) if without else None,
        "rss_kib_per_waiter_first_round": held[0]["rss_kib_per_waiter"] if held else None,
        "rss_kib_per_waiter_median": median([row["rss_kib_per_waiter"] for row in held]),
        "thread_per_waiter_rss_kib": thread_row["rss_kib_per_thread"],
        "errors": sum(sum(row["errors"].values()) for row in rounds),
        "non_2xx": sum(v for row in rounds for k, v in row["statuses"].items() if not k.startswith("2")),
    }
    for kind in ("steady", "burst"):
        mine = [row for row in notify if row["kind"] == kind and row["latency_ms"]]
        if mine:
            summary[f"notify_{kind}"] = {
                "p50_ms_median": median([row["latency_ms"]["p50"] for row in mine]),
                "p99_ms_median": median([row["latency_ms"]["p99"] for row in mine]),
                "max_ms_max": max(row["latency_ms"]["max"] for row in mine),
                "missing": sum(row["missing"] for row in mine),
                "errors": sum(sum(row["errors"].values()) for row in mine),
            }
    report["rounds"] = rounds
    report["notify"] = notify
    report["thread_cost"] = thread_row
    report["summary"] = summary
    report["target"] = ">= 5,000 long-polls; notification p99 <= 50 ms; creations with them >= 0.90 of without"
    print(f"summary: {summary}")
    report.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
