"""Time the rules matcher on queues of parties with roles, the queues whose line-ups cost most.

Two 5v5 queues (MMR ~ N(1500, 300), window 100 +20/s up to 1000, enqueue times over the last
60 s), pure matcher (match_queue, no Redis):

- realistic: parties of 1-5 players (70/15/8/4/3%), roles tank 1, healer 1, dps 3, each player
  offering 1-3 of them;
- random: parties of 1-5 players (evenly), five roles of one slot each, each player offering a
  random 1-5 of them: placing such parties is a search whose size the offers choose.

Each is matched as the service does it, with the search bounded (constrained.py's
_FIRST_PASS_STEPS, _ANCHOR_STEPS, _SECOND_PASS_STEPS), and with `--unbounded` also without the
bound, for comparison (slow: minutes for the random queue at 20,000 and beyond). Printed per
queue and size: seconds, matches formed, search steps spent, anchors left undecided.

    .venv/bin/python bench/bench_rules_parties.py [--sizes 1000,10000,100000] [--unbounded] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

from mmserver.matchmaking import MatchRules, QueuedTicket, constrained

NOW = 1_700_000_000.0
REALISTIC_ROLES = (("tank", 1), ("healer", 1), ("dps", 3))
RANDOM_ROLES = tuple((name, 1) for name in "abcde")


def realistic(n: int, seed: int) -> list[QueuedTicket]:
    rnd = random.Random(seed)
    names = [name for name, _ in REALISTIC_ROLES]
    tickets = []
    for i in range(n):
        size = rnd.choices((1, 2, 3, 4, 5), (70, 15, 8, 4, 3))[0]
        roles = tuple(tuple(rnd.sample(names, rnd.choice((1, 1, 2, 3)))) for _ in range(size))
        tickets.append(QueuedTicket(f"t{i}", rnd.gauss(1500, 300), size, NOW - rnd.uniform(0, 60), roles=roles))
    return tickets


def random_offers(n: int, seed: int) -> list[QueuedTicket]:
    rnd = random.Random(seed)
    tickets = []
    for i in range(n):
        size = rnd.randint(1, 5)
        roles = tuple(tuple(rnd.sample("abcde", rnd.randint(1, 5))) for _ in range(size))
        tickets.append(QueuedTicket(f"t{i}", rnd.gauss(1500, 300), size, NOW - rnd.uniform(0, 60), roles=roles))
    return tickets


QUEUES = {
    "realistic": (realistic, MatchRules(5, 2, 100.0, 20.0, 1000.0, roles=REALISTIC_ROLES)),
    "random": (random_offers, MatchRules(5, 2, 100.0, 20.0, 1000.0, roles=RANDOM_ROLES)),
}
BOUNDS = ("_FIRST_PASS_STEPS", "_FIRST_PASS_TOTAL", "_FIRST_PASS_FLOOR", "_ANCHOR_STEPS", "_SECOND_PASS_STEPS")


def run_once(tickets: list[QueuedTicket], rules: MatchRules) -> dict:
    matcher = constrained._Constrained(tickets, rules, NOW)
    started = time.perf_counter()
    matching = matcher.run()
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 3), "matches": len(matching.proposals), "steps": matcher.steps_spent,
            "undecided": matcher.lineup.undecided}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--unbounded", action="store_true", help="also match without the bound on searches")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rules_parties.json")
    args = parser.parse_args(argv)
    bounded = {name: getattr(constrained, name) for name in BOUNDS}
    rows = []
    print(f"{'queue':<10} {'tickets':>8} {'bound':<10} {'seconds':>8} {'matches':>8} {'steps':>10} {'undecided':>9}")
    for size in [int(x) for x in args.sizes.split(",")]:
        for queue, (make, rules) in QUEUES.items():
            tickets = make(size, seed=size)
            variants = [("bounded", bounded)]
            if args.unbounded:
                variants.append(("unbounded", {name: 10**15 for name in BOUNDS}))
            for label, values in variants:
                for name, value in values.items():
                    setattr(constrained, name, value)
                row = {"queue": queue, "tickets": size, "bound": label, **run_once(tickets, rules)}
                rows.append(row)
                print(f"{queue:<10} {size:>8,} {label:<10} {row['seconds']:>8.2f} {row['matches']:>8,} "
                      f"{row['steps']:>10,} {row['undecided']:>9,}", flush=True)
            for name, value in bounded.items():
                setattr(constrained, name, value)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"python": platform.python_version(), "bounds": bounded, "results": rows},
                                   indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
