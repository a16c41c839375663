"""Match quality against an exact per-tick reference, on a simulated population: 1v1 and 5v5.

Tickets arrive as a Poisson process, solo, MMR ~ N(1500, 300); every 0.5 s a tick proposes
matches over the whole queue under the built-in rules (window 100, +20/s, max 1000) and
removes what it matched. The same arrivals go through two policies, each with its own queue:

- the matcher: mmserver's propose_matches;
- the reference: in each tick, the most matches the rules allow, and among those the least
  total MMR spread. 1v1: a maximum-weight matching over every allowed pair (networkx's
  blossom algorithm with maxcardinality, integer weights 10^7 - spread in thousandths):
  exact. 5v5: a dynamic program over the MMR order forming matches of 10 consecutive tickets,
  each within the window of its oldest ticket: exact when every window is the same (then
  some best set of matches is made of consecutive runs); with windows that widen at different
  rates, the best set of such runs.

Figures over the ticks after a warm-up (the first tenth): matches per tick, the wait of the
matched tickets (p50, p90, p99, seconds) and the mean spread per match, for both policies,
then matcher / reference. Each policy sees the same arrivals; the queues then differ. "Same
queue" runs the reference, without acting, on the matcher's own queue in each tick: the
matches it could have formed there, and their spread per match.

    .venv/bin/python bench/bench_quality.py [--ticks 1200] [--seed 1] [--quick] [--out PATH]
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import networkx as nx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Report, percentile  # noqa: E402

from mmserver.matchmaking import MatchRules, Proposal, QueuedTicket, propose_matches, window  # noqa: E402

TICK_S = 0.5
MMR_MEAN, MMR_SD = 1500.0, 300.0
SCENARIOS = {  # name: (rules, arrivals per second)
    "1v1": (MatchRules(1, 2, 100.0, 20.0, 1000.0), (2, 10, 50)),
    "5v5": (MatchRules(5, 2, 100.0, 20.0, 1000.0), (5, 20, 100)),
}
Policy = Callable[[Sequence[QueuedTicket], MatchRules, float], list[Proposal]]


def arrivals(rate: float, seconds: float, seed: int) -> list[tuple[float, float]]:
    """(arrival time, MMR) of a Poisson process over [0, seconds)."""
    rnd = random.Random(seed)
    out = []
    at = rnd.expovariate(rate)
    while at < seconds:
        out.append((at, rnd.gauss(MMR_MEAN, MMR_SD)))
        at += rnd.expovariate(rate)
    return out


def exact_duels(tickets: Sequence[QueuedTicket], rules: MatchRules, now: float) -> list[Proposal]:
    """Most pairs, then least total spread: a maximum-weight maximum-cardinality matching."""
    ordered = sorted(tickets, key=lambda t: t.mmr)
    windows = [window(rules, now - t.enqueued_at) for t in ordered]
    graph = nx.Graph()
    for i, a in enumerate(ordered):
        for j in range(i + 1, len(ordered)):
            gap = ordered[j].mmr - a.mmr
            if gap > rules.mmr_window_max:
                break
            if gap <= windows[i] or gap <= windows[j]:
                graph.add_edge(i, j, weight=10**7 - round(gap * 1000))
    pairs = nx.max_weight_matching(graph, maxcardinality=True)
    return [
        Proposal(((ordered[i].ticket_id,), (ordered[j].ticket_id,)), abs(ordered[j].mmr - ordered[i].mmr))
        for i, j in pairs
    ]


def consecutive_groups(tickets: Sequence[QueuedTicket], rules: MatchRules, now: float) -> list[Proposal]:
    """Most matches of `players_per_match` MMR-consecutive solo tickets, then least spread."""
    need, team = rules.players_per_match, rules.team_size
    ordered = sorted(tickets, key=lambda t: (t.mmr, t.ticket_id))
    n = len(ordered)
    count = [0] * (n + 1)
    spread = [0.0] * (n + 1)
    ends = [False] * (n + 1)
    for t in range(1, n + 1):
        count[t], spread[t] = count[t - 1], spread[t - 1]
        if t < need:
            continue
        group = ordered[t - need:t]
        gap = group[-1].mmr - group[0].mmr
        if gap <= window(rules, now - min(x.enqueued_at for x in group)):
            c, s = count[t - need] + 1, spread[t - need] + gap
            if c > count[t] or (c == count[t] and s < spread[t]):
                count[t], spread[t], ends[t] = c, s, True
    proposals = []
    t = n
    while t >= need:
        if ends[t]:
            ids = [x.ticket_id for x in ordered[t - need:t]]
            teams = tuple(tuple(ids[k::rules.teams]) for k in range(rules.teams))
            assert all(len(members) == team for members in teams)
            proposals.append(Proposal(teams, ordered[t - 1].mmr - ordered[t - need].mmr))
            t -= need
        else:
            t -= 1
    return proposals


def simulate(policy: Policy, rules: MatchRules, stream: list[tuple[float, float]], ticks: int, warmup: int,
             shadow: Policy | None = None) -> dict:
    """Run `policy` tick by tick; `shadow`, when given, is run on the same queue in each counted
    tick without acting, to compare the two on identical input."""
    queue: dict[str, QueuedTicket] = {}
    same_queue = [0, 0, 0.0, 0.0]  # matches: policy, shadow; spread: policy, shadow
    k = 0
    per_tick: list[int] = []
    waits: list[float] = []
    spreads: list[float] = []
    seconds = 0.0
    for n in range(1, ticks + 1):
        now = n * TICK_S
        while k < len(stream) and stream[k][0] <= now:
            at, mmr = stream[k]
            ticket_id = f"t{k:08d}"
            queue[ticket_id] = QueuedTicket(ticket_id, mmr, 1, at)
            k += 1
        started = time.perf_counter()
        tickets = list(queue.values())
        proposals = policy(tickets, rules, now)
        seconds += time.perf_counter() - started
        counted = n > warmup
        if shadow is not None and counted:
            other = shadow(tickets, rules, now)
            same_queue[0] += len(proposals)
            same_queue[1] += len(other)
            same_queue[2] += sum(p.mmr_spread for p in proposals)
            same_queue[3] += sum(p.mmr_spread for p in other)
        for proposal in proposals:
            for members in proposal.teams:
                for ticket_id in members:
                    ticket = queue.pop(ticket_id)
                    if counted:
                        waits.append(now - ticket.enqueued_at)
            if counted:
                spreads.append(proposal.mmr_spread)
        if counted:
            per_tick.append(len(proposals))
    result = {
        "matches_per_tick": round(sum(per_tick) / len(per_tick), 3) if per_tick else 0.0,
        "wait_p50_s": _round(percentile(waits, 50)),
        "wait_p90_s": _round(percentile(waits, 90)),
        "wait_p99_s": _round(percentile(waits, 99)),
        "mean_spread": round(sum(spreads) / len(spreads), 2) if spreads else None,
        "matched_tickets": len(waits),
        "left_in_queue": len(queue),
        "propose_s_total": round(seconds, 3),
    }
    if shadow is not None:
        result["same_queue"] = {
            "matches_ratio": _ratio(same_queue[0], same_queue[1]),
            "spread_per_match_ratio": _ratio(same_queue[2] / max(1, same_queue[0]), same_queue[3] / max(1, same_queue[1])),
        }
    return result


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def compare(scenario: str, rate: float, ticks: int, seed: int, matcher: Policy = propose_matches) -> dict:
    rules, _ = SCENARIOS[scenario]
    reference = exact_duels if rules.players_per_match == 2 else consecutive_groups
    stream = arrivals(rate, ticks * TICK_S, seed)
    warmup = ticks // 10
    ours = simulate(matcher, rules, stream, ticks, warmup, shadow=reference)
    ref = simulate(reference, rules, stream, ticks, warmup)
    keys = ("matches_per_tick", "wait_p50_s", "wait_p90_s", "wait_p99_s", "mean_spread")
    return {
        "scenario": scenario,
        "arrivals_per_s": rate,
        "ticks": ticks,
        "matcher": ours,
        "reference": ref,
        "ratio": {key: _ratio(ours[key], ref[key]) for key in keys},
    }


def _line(label: str, row: dict) -> str:
    def cell(value, width, digits):
        return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"
    return (f"  {label:<10} {cell(row['matches_per_tick'], 9, 3)} {cell(row['wait_p50_s'], 7, 2)} "
            f"{cell(row['wait_p90_s'], 7, 2)} {cell(row['wait_p99_s'], 7, 2)} {cell(row['mean_spread'], 8, 2)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=1200, help="0.5 s ticks per run (default: 10 minutes)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a smoke test: 80 ticks")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    ticks = 80 if args.quick else args.ticks
    report = Report("quality", vars(args) | {"out": None, "ticks": ticks})
    rows = []
    print(f"{'':<12} {'match/tick':>9} {'p50 s':>7} {'p90 s':>7} {'p99 s':>7} {'spread':>8}")
    for scenario, (_, rates) in SCENARIOS.items():
        for rate in rates:
            row = compare(scenario, rate, ticks, args.seed)
            rows.append(row)
            print(f"{scenario} at {rate}/s")
            print(_line("matcher", row["matcher"]))
            print(_line("reference", row["reference"]))
            print(_line("ratio", row["ratio"]))
            same = row["matcher"]["same_queue"]
            print(f"  same queue, matcher / reference: matches {same['matches_ratio']}, "
                  f"spread per match {same['spread_per_match_ratio']}", flush=True)
    report["results"] = rows
    report.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
