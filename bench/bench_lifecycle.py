"""Start-to-ready time, and graceful stop time with load in flight.

- start-to-ready: from spawning the real `mmserver` command to the first 200 from /readyz,
  on an external redis-server and on the embedded one (mmserver starts redis-server itself);
- stop under load: while bench/loadgen.py (its own processes) keeps 32 connections creating
  tickets and holds long-polls open, SIGTERM; the figure is the time from the signal to the
  process's exit (status 0 expected), with MMSERVER_DRAIN_DELAY_S as given. The target is less
  than the drain delay plus 1 s.

    .venv/bin/python bench/bench_lifecycle.py [--rounds 5] [--drain-delay 1] [--long-polls 50]
"""
from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RedisServer, Report, finish_loadgen, median, mmserver, request, start_loadgen,
)

from tests.waiting import wait_until  # noqa: E402


def long_polls(server) -> int:
    return server.admin("/admin/status").json()["workers"]["http"]["long_polls"]


def time_to_ready(server, timeout: float = 30.0) -> float:
    started = time.monotonic()
    server.start()
    while time.monotonic() - started < timeout:
        if server.process.poll() is not None:
            raise RuntimeError(f"mmserver exited with {server.process.returncode}:\n{server.output()}")
        try:
            if request(server.url + "/readyz", timeout=1).status == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"mmserver not ready after {timeout} s")


def stop(server, timeout: float = 60.0) -> tuple[float, int]:
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    status = server.process.wait(timeout)
    return time.monotonic() - started, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--drain-delay", type=float, default=1.0)
    parser.add_argument("--long-polls", type=int, default=50)
    parser.add_argument("--load-seconds", type=float, default=2.0, help="load before the SIGTERM")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    report = Report("lifecycle", vars(args) | {"out": None})
    ready = {"external": [], "embedded": []}
    stops = []
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        redis_server = RedisServer(directory / "redis").start()
        try:
            for r in range(args.rounds):
                # Start on the embedded Redis (no URL), then stop at once.
                embedded = mmserver(directory / f"embedded{r}", "", env={"MMSERVER_SHUTDOWN_TIMEOUT_S": "10"})
                ready["embedded"].append(time_to_ready(embedded))
                stop(embedded)

                server = mmserver(directory / f"mm{r}", redis_server.url, env={
                    "MMSERVER_DRAIN_DELAY_S": str(args.drain_delay),
                    "MMSERVER_HTTP_THREADS": str(args.long_polls + 24),
                    "MMSERVER_MAX_LONGPOLLS": str(args.long_polls + 8),
                })
                ready["external"].append(time_to_ready(server))
                total = args.load_seconds + args.drain_delay + 15
                holder = start_loadgen(["hold", "--url", server.url, "--count", str(args.long_polls),
                                        "--duration", str(total), "--prefix", f"h{r}"])
                poster = start_loadgen(["post", "--url", server.url, "--concurrency", "32",
                                        "--duration", str(total), "--prefix", f"s{r}", "--until-refused"])
                # The load runs from when the long-polls are held: on a busy machine the load
                # generators take a while to start, and must not meet a server already stopped.
                if not wait_until(lambda: long_polls(server) >= args.long_polls, 30, interval=0.05):
                    raise RuntimeError(f"the long-polls were not all held within 30 s: {long_polls(server)}")
                time.sleep(args.load_seconds)
                seconds, status = stop(server)
                posted = finish_loadgen(poster, total + 30)
                held = finish_loadgen(holder, total + 60)
                row = {"round": r, "stop_s": round(seconds, 3), "exit_status": status,
                       "over_drain_delay_s": round(seconds - args.drain_delay, 3),
                       "creates": posted["statuses"], "create_errors": posted["errors"],
                       "long_poll_answers": held["statuses"], "long_poll_errors": held["errors"]}
                stops.append(row)
                print(f"round {r}: ready external {ready['external'][-1]:.3f} s, embedded "
                      f"{ready['embedded'][-1]:.3f} s; stop under load {seconds:.3f} s (status {status}, "
                      f"drain delay {args.drain_delay} s); creates {posted['statuses']}, "
                      f"long-polls {held['statuses']}", flush=True)
        finally:
            redis_server.stop()
    summary = {
        "ready_external_s_median": round(median(ready["external"]), 3),
        "ready_embedded_s_median": round(median(ready["embedded"]), 3),
        "stop_s_median": round(median([row["stop_s"] for row in stops]), 3),
        "stop_s_max": max(row["stop_s"] for row in stops),
        "stop_over_drain_delay_s_max": max(row["over_drain_delay_s"] for row in stops),
        "exit_statuses": sorted({row["exit_status"] for row in stops}),
    }
    report["ready_s"] = ready
    report["stops"] = stops
    report["summary"] = summary
    report["target"] = "stop under load < drain delay + 1 s"
    print(f"summary: {summary}")
    report.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
