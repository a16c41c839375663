"""Time propose_matches on synthetic queues: 1v1 solos and 5v5 with a mix of parties.

Tickets get a uniform MMR in 0-3000 and enqueue times spread over the last 60 s; modes use the
built-in window (100, +20/s, max 1000). Each figure is the best of a few runs (fewer for the
largest queues), so other load on the machine inflates it as little as possible.

    .venv/bin/python bench/bench_matcher.py [--sizes 1000,10000,100000,1000000] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

from mmserver.matchmaking import MatchRules, QueuedTicket, propose_matches

NOW = 1_700_000_000.0
# Share of tickets by party size for 5v5: mostly solos, a few full stacks.
PARTY_SIZES = (1, 2, 3, 4, 5)
PARTY_WEIGHTS = (70, 15, 8, 4, 3)
SCENARIOS = {
    "1v1": (MatchRules(1, 2, 100.0, 20.0, 1000.0), False),
    "5v5-parties": (MatchRules(5, 2, 100.0, 20.0, 1000.0), True),
}


def make_queue(count: int, parties: bool, seed: int) -> list[QueuedTicket]:
    rnd = random.Random(seed)
    sizes = rnd.choices(PARTY_SIZES, PARTY_WEIGHTS, k=count) if parties else [1] * count
    return [
        QueuedTicket(f"t{i}", rnd.uniform(0, 3000), sizes[i], NOW - rnd.uniform(0, 60))
        for i in range(count)
    ]


def measure(scenario: str, count: int) -> dict:
    rules, parties = SCENARIOS[scenario]
    tickets = make_queue(count, parties, seed=count)
    runs = 5 if count <= 100_000 else 2
    best = float("inf")
    proposals = []
    for _ in range(runs):
        started = time.perf_counter()
        proposals = propose_matches(tickets, rules, NOW)
        best = min(best, time.perf_counter() - started)
    matched_tickets = sum(len(team) for p in proposals for team in p.teams)
    players = sum(t.size for t in tickets)
    spreads = sorted(p.mmr_spread for p in proposals)
    return {
        "scenario": scenario,
        "tickets": count,
        "players": players,
        "seconds": round(best, 4),
        "tickets_per_s": round(count / best) if best else None,
        "proposals": len(proposals),
        "matched_tickets": matched_tickets,
        "median_spread": round(spreads[len(spreads) // 2], 2) if spreads else None,
        "runs": runs,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "matcher.json")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    print(f"{'scenario':<12} {'tickets':>9} {'seconds':>9} {'tickets/s':>11} {'proposals':>10} {'matched':>9} {'spread':>7}")
    for scenario in SCENARIOS:
        for count in sizes:
            row = measure(scenario, count)
            rows.append(row)
            print(f"{scenario:<12} {count:>9,} {row['seconds']:>9.4f} {row['tickets_per_s']:>11,} "
                  f"{row['proposals']:>10,} {row['matched_tickets']:>9,} {row['median_spread']:>7}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": rows,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
