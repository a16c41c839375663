"""Run every benchmark, one after the other, each writing bench/results/<name>.json.

    .venv/bin/python bench/run_all.py [--quick] [--only create,tick,...]

--quick runs each in a small configuration (a minute, not half an hour), writing to
bench/results/quick/: for checking the scripts, not for figures. The full run takes about half an hour on the 2-core machine, most
of it filling Redis with 1,000,000 tickets for the tick benchmark.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = {
    "matcher": ["bench_matcher.py"],
    "quality": ["bench_quality.py"],
    "create": ["bench_create.py"],
    "tick": ["bench_tick.py"],
    "rules": ["bench_rules.py"],
    # The same ticks with the append-only file rewritten before them instead of during them.
    "rules_rewritten": ["bench_rules.py", "--scenarios", "1v1,5v5-rules", "--aof-rewrite-first",
                        "--out", str(HERE / "results" / "rules_rewritten.json")],
    "rules_parties": ["bench_rules_parties.py"],
    "rules_waiting": ["bench_rules_waiting.py"],
    "redis_hold": ["bench_redis_hold.py"],
    "notify": ["bench_notify.py"],
    "e2e": ["bench_e2e.py"],
    "lifecycle": ["bench_lifecycle.py"],
    "memory": ["bench_memory.py"],
    "auth": ["bench_auth.py"],
    "webhooks": ["bench_webhooks.py"],
    "event_log": ["bench_event_log.py"],
    "redis_cpu": ["bench_redis_cpu.py"],
    "waiters": ["bench_waiters.py"],
}
QUICK = {
    "matcher": ["bench_matcher.py", "--sizes", "1000,10000"],
    "quality": ["bench_quality.py", "--quick"],
    "create": ["bench_create.py", "--rounds", "2", "--seconds", "2"],
    "tick": ["bench_tick.py", "--sizes", "1000,10000", "--rounds", "1"],
    "rules": ["bench_rules.py", "--count", "2000", "--rounds", "1"],
    "rules_rewritten": ["bench_rules.py", "--count", "2000", "--rounds", "1", "--scenarios", "1v1,5v5-rules",
                        "--aof-rewrite-first"],
    "rules_parties": ["bench_rules_parties.py", "--sizes", "1000,10000"],
    "rules_waiting": ["bench_rules_waiting.py", "--tickets", "10000", "--arrivals", "50", "--ticks", "4"],
    "redis_hold": ["bench_redis_hold.py", "--count", "5000"],
    "notify": ["bench_notify.py", "--rounds", "1", "--idle", "100", "--probes", "50"],
    "e2e": ["bench_e2e.py", "--rounds", "1", "--seconds", "5"],
    "lifecycle": ["bench_lifecycle.py", "--rounds", "1"],
    "memory": ["bench_memory.py", "--tickets", "10000", "--settle", "1"],
    "auth": ["bench_auth.py", "--rounds", "1", "--calls", "200"],
    "webhooks": ["bench_webhooks.py", "--rounds", "1", "--seconds", "2", "--burst", "1000"],
    "event_log": ["bench_event_log.py", "--tickets", "5000", "--lifecycles", "200"],
    "redis_cpu": ["bench_redis_cpu.py", "--rounds", "1", "--players", "200", "--poll-tickets", "200", "--no-before"],
    "waiters": ["bench_waiters.py", "--waiters", "500", "--rounds", "2", "--seconds", "2", "--wait", "5",
                "--probes", "50"],
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated names: " + ",".join(FULL))
    args = parser.parse_args(argv)
    table = QUICK if args.quick else FULL
    names = [n for n in args.only.split(",") if n] or list(table)
    failed = []
    for name in names:
        print(f"=== {name} ({time.strftime('%H:%M:%S')}, load {Path('/proc/loadavg').read_text().split()[:3]})",
              flush=True)
        script, *rest = table[name]
        if args.quick:  # small runs never overwrite the real figures
            rest += ["--out", str(HERE / "results" / "quick" / f"{name}.json")]
        if subprocess.run([sys.executable, str(HERE / script), *rest]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    print(f"results in {HERE / 'results'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
