"""python -m tests.chaos --seed N --duration S --replicas 3 --faults K [--json PATH]

Prints the summary table, writes it as JSON, and exits 1 on any violation."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tests.chaos.report import table, write
from tests.chaos.run import Options, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=90.0, help="seconds of client traffic")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--faults", type=int, default=10)
    parser.add_argument("--players", type=int, default=8, help="client threads")
    parser.add_argument("--servers", type=int, default=3, help="registered dedicated servers")
    parser.add_argument("--workdir", type=Path, default=None, help="kept after the run (default: a temp dir, "
                                                                   "removed unless something failed)")
    parser.add_argument("--json", type=Path, default=Path("var/chaos-summary.json"),
                        help="where to write the summary (var/ is ignored by git)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = run(Options(seed=args.seed, duration_s=args.duration, replicas=args.replicas, faults=args.faults,
                         players=args.players, servers=args.servers, workdir=args.workdir))
    print(table(result))
    write(result, args.json)
    print(f"summary written to {args.json}; work directory {result['options']['workdir']}")
    return 1 if result["violations"]["count"] else 0


if __name__ == "__main__":
    sys.exit(main())
