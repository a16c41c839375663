"""What a tick costs for the tickets a mode's rules keep waiting, with and without the memo.

A role queue whose players mostly offer the same role is mostly tickets that cannot match:
here a 5v5 mode with roles (tank 1, healer 1, dps 3), a `same` rule on a string attribute
with three values, a `distance` rule on `level` and latencies over three regions (the mode of
bench_rules_matcher.py), whose players offer dps 85% of the time (tank 5%, healer 5%, dps or
tank 5%), enqueued over the last 10 minutes, MMR ~ N(1500, 300). After three ticks (most of
the matches the queue allows are formed in the first), ticks 0.5 s apart with new players
arriving between them (--arrivals per tick, the same population): each tick is timed with
the queue's FailureMemo (matchmaking/memo.py) as the ticker keeps it, and, every other
tick, on the same queue without it, and the two answers compared (they must be identical).

Pure: no Redis. Figures: medians over --ticks ticks.

    .venv/bin/python bench/bench_rules_waiting.py [--tickets 100000] [--arrivals 50,500] [--ticks 8]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rules_matcher import NOW, REGIONS, mode  # noqa: E402
from common import Report  # noqa: E402

from mmserver.matchmaking import QueuedTicket, match_queue  # noqa: E402
from mmserver.matchmaking.memo import FailureMemo  # noqa: E402

OFFERS = ((("dps",), 85), (("tank",), 5), (("healer",), 5), (("dps", "tank"), 5))


def player(rnd: random.Random, name: str, enqueued_at: float) -> QueuedTicket:
    home = rnd.randrange(3)
    latencies = {r: (rnd.uniform(10, 70) if k == home else rnd.uniform(60, 250)) for k, r in enumerate(REGIONS)}
    roles = rnd.choices([offer for offer, _ in OFFERS], [weight for _, weight in OFFERS])[0]
    return QueuedTicket(name, rnd.gauss(1500, 300), 1, enqueued_at,
                        {"build": rnd.choice(("aggro", "control", "combo")), "level": float(rnd.randint(1, 60))},
                        latencies, None, (roles,), (name,))


def matched_ids(matching) -> set[str]:
    return {ticket_id for p in matching.proposals for team in p.teams for ticket_id in team}


def measure(tickets: int, arrivals: int, ticks: int, seed: int) -> dict:
    rnd = random.Random(seed)
    rules = mode(True)
    queue = [player(rnd, f"t{n}", NOW - rnd.uniform(0, 600)) for n in range(tickets)]
    memo = FailureMemo()
    now = NOW
    for _ in range(3):
        gone = matched_ids(match_queue(queue, rules, now, memo=memo))
        queue = [t for t in queue if t.ticket_id not in gone]
    with_memo, without, reused, matches = [], [], [], []
    for tick in range(ticks):
        now += 0.5
        queue += [player(rnd, f"a{tick}.{n}", now - rnd.uniform(0, 0.5)) for n in range(arrivals)]
        before = memo.recalled
        started = time.perf_counter()
        matching = match_queue(queue, rules, now, memo=memo)
        with_memo.append(time.perf_counter() - started)
        reused.append(memo.recalled - before)
        matches.append(len(matching.proposals))
        if tick % 2 == 0:
            started = time.perf_counter()
            fresh = match_queue(queue, rules, now)
            without.append(time.perf_counter() - started)
            if fresh != matching:
                raise RuntimeError("the memo changed an answer: the matcher is wrong")
        gone = matched_ids(matching)
        queue = [t for t in queue if t.ticket_id not in gone]
    return {
        "arrivals_per_tick": arrivals,
        "queued": len(queue),
        "tick_with_memo_s": round(statistics.median(with_memo), 4),
        "tick_without_s": round(statistics.median(without), 4),
        "speedup": round(statistics.median(without) / statistics.median(with_memo), 2),
        "answers_reused_per_tick": round(statistics.median(reused)),
        "matches_per_tick": round(statistics.median(matches), 1),
        "ticks": ticks,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--arrivals", default="50,500")
    parser.add_argument("--ticks", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    report = Report("rules_waiting", vars(args) | {"out": None})
    rows = []
    print(f"{'arrivals':>9} {'queued':>8} {'with memo':>10} {'without':>8} {'speedup':>8} {'reused':>8} {'matches':>8}")
    for arrivals in [int(a) for a in args.arrivals.split(",")]:
        row = measure(args.tickets, arrivals, args.ticks, seed=args.tickets + arrivals)
        rows.append(row)
        print(f"{arrivals:>9} {row['queued']:>8,} {row['tick_with_memo_s']:>10.3f} {row['tick_without_s']:>8.3f} "
              f"{row['speedup']:>7.2f}x {row['answers_reused_per_tick']:>8,} {row['matches_per_tick']:>8}", flush=True)
    report["results"] = rows
    report.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
