"""Time the matcher of modes with rules (match_queue -> constrained.py) on a big queue.

A 5v5 mode with roles (tank 1, healer 1, dps 3; each player offers 1-3 roles), a `same` rule on
a string attribute with 3 values, a `distance` rule on `level` (max 10, 30 after 20 s), latencies
over 3 regions (max 80 ms, 120 after 15 s), MMR ~ N(1500, 300), enqueue times over the last
60 s. Two cases on the same queue:

- steady: MMR window 0, growth 0, max 0, so nothing matches: the cost per tick of a big queue
  that cannot match (every ticket is still examined and gets its blocked_by);
- matching: the default window (100, +20/s, max 1000): nearly everything matches;
- leftover: the tickets the matching case left unmatched, matched again at the same instant
  with the same window: nothing matches, and each ticket is examined in full (its walk, the
  lineup check), which is what every tick costs for tickets the rules keep waiting. "steady"
  is the best case of a queue that cannot match (each ticket refused at once); this is the
  usual one. Its figure per ticket is printed as well.

Beside them, the plain 1v1 propose_matches on as many tickets, as the base of the ratios.
Figures are the median of a few rounds. Pure: no Redis.

    .venv/bin/python bench/bench_rules_matcher.py [--tickets 100000] [--rounds 5] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from mmserver.matchmaking import MatchRules, QueuedTicket, match_queue, propose_matches
from mmserver.matchmaking.rules import Latency, Rule, Step

NOW = 1_700_000_000.0
REGIONS = ("eu-west", "us-east", "ap-south")
ROLES = (("tank", 1), ("healer", 1), ("dps", 3))
RULES = (
    Rule("same-build", "same", "build"),
    Rule("level-gap", "distance", "level", 10.0, (Step(20.0, 30.0),)),
)
LATENCY = Latency(80.0, (Step(15.0, 120.0),))


def mode(window: bool) -> MatchRules:
    base, growth, top = (100.0, 20.0, 1000.0) if window else (0.0, 0.0, 0.0)
    return MatchRules(5, 2, base, growth, top, roles=ROLES, rules=RULES, latency=LATENCY, regions=REGIONS)


def make_queue(count: int, seed: int) -> list[QueuedTicket]:
    rnd = random.Random(seed)
    names = [name for name, _ in ROLES]
    tickets = []
    for i in range(count):
        home = rnd.randrange(3)
        latencies = {r: (rnd.uniform(10, 70) if k == home else rnd.uniform(60, 250)) for k, r in enumerate(REGIONS)}
        roles = (tuple(rnd.sample(names, rnd.choice((1, 1, 2, 3)))),)
        tickets.append(QueuedTicket(
            f"t{i}", rnd.gauss(1500, 300), 1, NOW - rnd.uniform(0, 60),
            {"build": rnd.choice(("aggro", "control", "combo")), "level": float(rnd.randint(1, 60))},
            latencies, None, roles, (f"p{i}",)))
    return tickets


def timed(fn, rounds: int):
    times = []
    result = None
    for _ in range(rounds):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rules_matcher.json")
    args = parser.parse_args(argv)
    n = args.tickets
    tickets = make_queue(n, seed=n)
    plain = [QueuedTicket(t.ticket_id, t.mmr, 1, t.enqueued_at) for t in tickets]
    duel = MatchRules(1, 2, 100.0, 20.0, 1000.0)
    base_s, pairs = timed(lambda: propose_matches(plain, duel, NOW), args.rounds)
    rows = [{"case": "plain-1v1", "seconds": round(base_s, 4), "proposals": len(pairs), "ratio": 1.0}]
    left_waiting: list[QueuedTicket] = []
    for case, window in (("steady", False), ("matching", True), ("leftover", True)):
        queue = left_waiting if case == "leftover" else tickets
        rules = mode(window)
        seconds, matching = timed(lambda: match_queue(queue, rules, NOW), args.rounds)
        if case == "matching":
            left_waiting = [t for t in tickets if t.ticket_id in matching.blocked]
        matched = sum(len(team) for p in matching.proposals for team in p.teams)
        rows.append({
            "case": case, "tickets": len(queue), "seconds": round(seconds, 4),
            "us_per_ticket": round(seconds / len(queue) * 1e6, 1), "proposals": len(matching.proposals),
            "matched_tickets": matched, "blocked": dict(Counter(matching.blocked.values())),
            "ratio": round(seconds / base_s, 2),
        })
    print(f"{n:,} tickets, median of {args.rounds} rounds")
    print(f"{'case':<10} {'seconds':>8} {'x 1v1':>6} {'proposals':>10} {'matched':>8}  blocked_by")
    for row in rows:
        print(f"{row['case']:<10} {row['seconds']:>8.3f} {row['ratio']:>6.2f} {row['proposals']:>10,} "
              f"{row.get('matched_tickets', 2 * row['proposals']):>8,}  {row.get('blocked', '')}")
    left = rows[-1]
    print(f"leftover: the {left['tickets']:,} tickets the matching case left, matched again: "
          f"{left['us_per_ticket']} us a ticket")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"python": platform.python_version(), "tickets": n,
                                    "rounds": args.rounds, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
