"""Ticket creation under a concurrent HTTP load, as a ratio of the stack's ceiling.

Two servers run side by side for the whole benchmark: the real `mmserver` command on a real
redis-server (append-only file on, ticks every 500 ms as by default), and baseline_server.py,
the same Falcon-on-waitress stack answering the same POST with no work. bench/loadgen.py (its
own process) loads them in alternation, several rounds, the order flipped every round so that
a drift in the machine's load hits both alike. The figure is the ratio of the medians.

    .venv/bin/python bench/bench_create.py [--rounds 5] [--seconds 5] [--concurrency 32]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ROOT, RedisServer, Report, cpu_seconds, free_port, median, mmserver, run_loadgen, write_config,
)


def start_baseline(port: int, threads: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "baseline_server.py"),
                                "--port", str(port), "--threads", str(threads)],
                               stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if line.strip() != "ready":
        process.kill()
        raise RuntimeError("baseline server did not start")
    return process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--threads", type=int, default=16, help="waitress threads of both servers")
    parser.add_argument("--tick-ms", type=int, default=500,
                        help="mmserver's tick period (a large value keeps the matchmaker out of the figure)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    report = Report("create", vars(args) | {"out": None})
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        redis_server = RedisServer(directory / "redis").start()
        config = write_config(directory / "mm.toml", {"duel": {
            "team_size": 1, "teams": 2, "accept_timeout_s": 10, "mmr_window": 100,
            "mmr_window_growth_per_s": 20, "mmr_window_max": 1000, "ticket_ttl_s": 300}})
        server = mmserver(directory / "mm", redis_server.url, env={
            "MMSERVER_CONFIG": str(config), "MMSERVER_HTTP_THREADS": str(args.threads),
            "MMSERVER_MAX_LONGPOLLS": str(min(12, args.threads - 2)),
            "MMSERVER_TICK_INTERVAL_MS": str(args.tick_ms)})
        baseline_port = free_port()
        baseline = None
        try:
            server.start().wait_ready()
            baseline = start_baseline(baseline_port, args.threads)
            targets = {"baseline": f"http://127.0.0.1:{baseline_port}", "mmserver": server.url}
            server_pids = {"baseline": baseline.pid, "mmserver": server.process.pid}
            for r in range(args.rounds):
                order = ["baseline", "mmserver"] if r % 2 == 0 else ["mmserver", "baseline"]
                for name in order:
                    pids = {"server": server_pids[name], "redis": redis_server.process.pid}
                    cpu_before = {k: cpu_seconds(pid) for k, pid in pids.items()}
                    result = run_loadgen(["post", "--url", targets[name], "--concurrency", str(args.concurrency),
                                          "--duration", str(args.seconds), "--prefix", f"r{r}{name[0]}",
                                          "--seed", str(r)], timeout=args.seconds + 60)
                    result.update(round=r, target=name)
                    # CPU per answered request, by process: where the machine's time went.
                    used = {k: cpu_seconds(pid) - cpu_before[k] for k, pid in pids.items()}
                    used["loadgen"] = result["loadgen_cpu_s"]
                    result["cpu_us_per_request"] = {k: round(v / max(1, result["requests"]) * 1e6, 1)
                                                    for k, v in used.items()}
                    rows.append(result)
                    lat = result["latency_ms"]
                    print(f"round {r} {name:<9} {result['ok_per_s']:>8.1f} ok/s  p50 {lat.get('p50')} ms  "
                          f"p99 {lat.get('p99')} ms  cpu us/request {result['cpu_us_per_request']}  "
                          f"statuses {result['statuses']} errors {result['errors']}",
                          flush=True)
            if server.process.poll() is not None:
                raise RuntimeError(f"mmserver exited during the run:\n{server.output()[-2000:]}")
        finally:
            if baseline is not None:
                baseline.terminate()
                baseline.wait(10)
            server.kill()
            redis_server.stop()

    summary = {}
    for name in ("baseline", "mmserver"):
        mine = [row for row in rows if row["target"] == name]
        summary[name] = {
            "ok_per_s_median": median([row["ok_per_s"] for row in mine]),
            "p50_ms_median": median([row["latency_ms"].get("p50", 0) for row in mine]),
            "p99_ms_median": median([row["latency_ms"].get("p99", 0) for row in mine]),
            "non_2xx": sum(row["requests"] - row["ok"] for row in mine),
            "errors": sum(sum(row["errors"].values()) for row in mine),
            "cpu_us_per_request_median": {
                part: median([row["cpu_us_per_request"][part] for row in mine])
                for part in ("server", "redis", "loadgen")},
        }
    ceiling = summary["baseline"]["ok_per_s_median"] or 0
    ratio = round(summary["mmserver"]["ok_per_s_median"] / ceiling, 3) if ceiling else None
    report["rounds"] = rows
    report["summary"] = summary
    report["ratio"] = ratio
    report["target_ratio"] = 0.80
    print(f"baseline {summary['baseline']['ok_per_s_median']:.1f}/s, mmserver "
          f"{summary['mmserver']['ok_per_s_median']:.1f}/s: ratio {ratio} (target >= 0.80)")
    report.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
