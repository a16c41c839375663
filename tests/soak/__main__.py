"""python -m tests.soak --duration S --rate R --longpolls N: a bounded soak run.

Exit status 0 when the run passes (zero errors, every operation exercised, memory flat), 1
otherwise. `--json FILE` also writes the figures for later comparison.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tests.soak.run import percentile, soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of paced load (default 300)")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (default 100)")
    parser.add_argument("--longpolls", type=int, default=50, help="long-polls held open (default 50)")
    parser.add_argument("--longpoll-wait", type=float, default=10.0, help="?wait= of each long-poll, seconds")
    parser.add_argument("--clients", type=int, default=16, help="client threads running the paced load")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mmserver-soak-") as directory:
        report = soak(Path(directory), duration_s=args.duration, rate=args.rate, longpolls=args.longpolls,
                      longpoll_wait_s=args.longpoll_wait, clients=args.clients)
    print("\n".join(report.lines()), flush=True)
    if args.json:
        first, last = report.rss_thirds() if report.rss else (0, 0)
        args.json.write_text(json.dumps({
            "duration_s": args.duration, "rate": args.rate, "longpolls": args.longpolls,
            "requests": report.requests, "errors": report.errors,
            "operations": {op: {"count": len(values), "p50_ms": percentile(values, 0.5) * 1000,
                                "p99_ms": percentile(values, 0.99) * 1000}
                           for op, values in report.stats.latencies.items()},
            "rss_first_third": first, "rss_last_third": last,
            "rss_slope_mib_per_hour": report.rss_slope_mib_per_hour(), "rss": report.rss,
            "passed": report.passed,
        }, indent=1))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
