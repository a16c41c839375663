"""Matchmaker tick with match rules at 100,000 queued tickets, beside the plain 1v1 mode.

The rules scenario is the one docs/PERFORMANCE.md names: a 5v5 mode with roles (tank 1,
healer 1, dps 3; each player offers one to three), two rules (`same` on a string attribute
with three values, `distance` on a number attribute, max 10 widening to 30 after 20 s) and
latencies over three regions (max 80 ms widening to 150 after 15 s); MMR ~ N(1500, 300).
The plain scenario is 1v1 on the same number of tickets, the ratio's base.

For each, on a real redis-server filled through the store's own create script:
- steady tick: the same queue under a zero MMR window (MMRs are continuous, so nothing can
  match): what every tick pays for a queue that size; median of --rounds ticks;
- read and match: the queue read (ZRANGE and parsing) and the pure matcher timed apart;
- matching tick: the real rules, first tick over the full queue: nearly everything is matched
  and claimed in that one tick. Meanwhile another process pings the same Redis every
  millisecond (RedisWaits): the longest wait is how long the tick held Redis from every other
  client of it, other replicas included. Whether Redis rewrote its append-only file during
  the tick is reported: the filling's and the tick's own writes start a rewrite there, which
  takes a core of this 2-core host and slows Redis's scripts; --aof-rewrite-first rewrites
  the file before the tick instead (docs/PERFORMANCE.md, "The tick and the append-only file's
  rewrite");
- the tick after it: the same ticker again, nothing new queued: every ticket the matching tick
  left is examined again and (nearly) none can match. The steady tick above is the best case
  of a queue that cannot match (each ticket refused by its MMR window at once); this is the
  usual one, tickets kept waiting by roles, latencies or a distance rule.

A third scenario, 5v5-short-of-roles, is the rules mode with players who offer dps 85% of
the time: the matching tick forms the few matches its tanks and healers allow, and the tick
after it runs over the ~78,000 left, kept waiting by roles (the ticker's failure memo then
answers for most of them: matchmaking/memo.py). Those tickets were all created in the last
seconds and their limits still widen, so it also waits until every ticket is past its last
expansion step and its window's cap (--settle-s), then times --rounds ticks with nothing
new, and --rounds ticks with 50 new players of the same population before each.

    .venv/bin/python bench/bench_rules.py [--count 100000] [--rounds 3] [--scenarios 1v1,5v5-rules] [--settle-s S]
                                          [--aof-rewrite-first]
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import AofRewrites, RedisServer, RedisWaits, Report, fill_queue, median, rewrite_aof  # noqa: E402

from mmserver.config import ModeConfig, ServersConfig  # noqa: E402
from mmserver.matchmaking import MatchRules, match_queue  # noqa: E402
from mmserver.matchmaking.rules import Latency, Rule, Step  # noqa: E402
from mmserver.shutdown import Shutdown  # noqa: E402
from mmserver.store import Store, keys  # noqa: E402
from mmserver.ticker import Ticker  # noqa: E402

REGIONS = ("eu-west", "us-east", "ap-south")
ROLES = ("tank", "healer", "dps")
BUILDS = ("aggressive", "balanced", "defensive")

RULES_MODE = ModeConfig(
    "ranked", team_size=5, teams=2, ticket_ttl_s=7200,
    attributes=(("build", "string"), ("level", "number")),
    roles=(("tank", 1), ("healer", 1), ("dps", 3)),
    rules=(Rule("same-build", "same", "build"),
           Rule("level-gap", "distance", "level", max=10.0, expand=(Step(20.0, 30.0),))),
    latency=Latency(max_ms=80.0, expand=(Step(15.0, 150.0),)),
)
PLAIN_MODE = ModeConfig("duel", team_size=1, teams=2, ticket_ttl_s=7200)


def rules_profile(rng) -> dict:
    """One player's create arguments: roles offered (dps most often), build, level, latencies
    (one region near, the others farther), MMR ~ N(1500, 300)."""
    offered = rng.choices([["dps"], ["tank"], ["healer"], ["dps", "tank"], ["dps", "healer"], list(ROLES)],
                          [40, 10, 10, 15, 15, 10])[0]
    home = rng.randrange(len(REGIONS))
    latencies = {region: round(rng.uniform(10, 60) if k == home else rng.uniform(60, 220), 1)
                 for k, region in enumerate(REGIONS)}
    return {"mmr": min(100000.0, max(0.0, rng.gauss(1500, 300))),
            "attributes": {"build": rng.choice(BUILDS), "level": float(rng.randint(1, 60))},
            "latencies": latencies, "roles": [offered]}


def short_of_roles_profile(rng) -> dict:
    """As rules_profile, but players offer dps 85% of the time (tank 5%, healer 5%, dps or
    tank 5%): most of the queue waits for tanks and healers (bench_rules_waiting.py)."""
    profile = rules_profile(rng)
    profile["roles"] = [rng.choices([["dps"], ["tank"], ["healer"], ["dps", "tank"]], [85, 5, 5, 5])[0]]
    return profile


def plain_profile(rng) -> dict:
    return {"mmr": min(100000.0, max(0.0, rng.gauss(1500, 300)))}


SCENARIOS = {"1v1": (PLAIN_MODE, plain_profile), "5v5-rules": (RULES_MODE, rules_profile),
             "5v5-short-of-roles": (RULES_MODE, short_of_roles_profile)}
SETTLED = {"5v5-short-of-roles"}  # scenarios also timed once the queue's limits settled
ARRIVALS = 50  # players arriving before each of the settled ticks with arrivals


def settle_s(mode: ModeConfig) -> float:
    """How long a ticket waits before its limits stop changing: past the last expansion step
    and the MMR window at its cap."""
    steps = [step.after_s for step in (mode.latency.expand if mode.latency else ())]
    steps += [step.after_s for rule in mode.rules for step in rule.expand]
    if mode.mmr_window_growth_per_s > 0:
        steps.append((mode.mmr_window_max - mode.mmr_window) / mode.mmr_window_growth_per_s)
    return max(steps, default=0.0)


def measure(redis_server: RedisServer, scenario: str, count: int, rounds: int, settle: float | None = None,
            rewrite_first: bool = False) -> dict:
    mode, profile = SCENARIOS[scenario]
    modes = {mode.name: mode}
    client = redis_server.client(decode_responses=True, socket_timeout=None)
    client.flushall()
    fill_rate = fill_queue(redis_server.url, modes, mode.name, count, prefix=f"{scenario}-",
                           profile=profile, regions=REGIONS)
    queued = client.zcard(keys.queue(mode.name, None))
    store = Store(client, modes, ServersConfig(), regions=REGIONS)

    frozen = dataclasses.replace(mode, mmr_window=0.0, mmr_window_growth_per_s=0.0, mmr_window_max=0.0)
    steady_ticker = Ticker(store, {mode.name: frozen}, shutdown=Shutdown(), regions=REGIONS)
    steady = []
    for _ in range(rounds):
        result = steady_ticker.tick()
        steady.append(result.duration_s)
        if result.matches_claimed:
            raise RuntimeError("the steady tick matched tickets: the benchmark's data is wrong")

    reads, matches = [], []
    rules = MatchRules.from_mode(mode, REGIONS)
    for _ in range(rounds):
        started = time.perf_counter()
        tickets = store.read_queue(mode.name, None)
        reads.append(time.perf_counter() - started)
        started = time.perf_counter()
        matching = match_queue(tickets, rules, store.now())
        matches.append(time.perf_counter() - started)

    rewritten = rewrite_aof(client) if rewrite_first else False
    ticker = Ticker(store, modes, shutdown=Shutdown(), regions=REGIONS)
    with RedisWaits(redis_server.url) as waits, AofRewrites(client) as rewrites:
        result = ticker.tick()
    left = client.zcard(keys.queue(mode.name, None))
    after = ticker.tick()
    row = {
        "scenario": scenario,
        "queued": queued,
        "fill_per_s": round(fill_rate),
        "steady_tick_s": round(median(steady), 4),
        "read_queue_s": round(median(reads), 4),
        "match_s": round(median(matches), 4),
        "proposals": len(matching.proposals),
        "matching_tick_s": round(result.duration_s, 4),
        "aof_rewrite_first": rewritten,
        "aof_rewrite_during_tick": rewrites.during,
        "matches_claimed": result.matches_claimed,
        "tickets_matched": queued - left,
        "redis_waits": waits.summary(),
        "left": left,
        "next_tick_s": round(after.duration_s, 4),
        "next_tick_matches": after.matches_claimed,
        "next_tick_us_per_ticket": round(after.duration_s / left * 1e6, 1) if left else None,
        "rounds": rounds,
    }
    if scenario in SETTLED:
        # Tickets just created are still widening their limits, so the tick after the matching
        # one walks most of them again. Once every ticket waited past its last step and its
        # window's cap, a tick's answers hold from one tick to the next (matchmaking/memo.py):
        # one tick to walk the tickets whose limits changed, then the settled ticks.
        newest = max(t.enqueued_at for t in store.read_queue(mode.name, None))
        wait = settle_s(mode) + 1 if settle is None else settle
        time.sleep(max(0.0, newest + wait - store.now()))
        ticker.tick()
        settled = [ticker.tick() for _ in range(rounds)]
        row["settled_tick_s"] = round(median([r.duration_s for r in settled]), 4)
        row["settled_tick_matches"] = sum(r.matches_claimed for r in settled)
        # The same with ARRIVALS new players (of the same population) before each tick.
        arriving = []
        for k in range(rounds):
            fill_queue(redis_server.url, modes, mode.name, ARRIVALS, prefix=f"{scenario}-arrival{k}-",
                       processes=1, profile=lambda rng, k=k: profile(random.Random(f"{k}-{rng.random()}")),
                       regions=REGIONS)
            arriving.append(ticker.tick())
        row["arrivals_tick_s"] = round(median([r.duration_s for r in arriving]), 4)
        row["arrivals_tick_matches"] = sum(r.matches_claimed for r in arriving)
    client.flushall()
    client.close()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--settle-s", type=float,
                        help="the wait after the newest ticket before the settled ticks (default: the mode's last "
                             "step or window cap, +1 s)")
    parser.add_argument("--aof-rewrite-first", action="store_true",
                        help="rewrite the append-only file before each matching tick: the tick then starts from a "
                             "compacted file; without it, the filling's and the tick's own writes start a rewrite "
                             "during the tick (the row says whether one ran)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    report = Report("rules", vars(args) | {"out": None})
    report["target"] = "5v5 with roles, two rules and latencies, 100,000 queued: steady tick < 1 s, matching tick < 2 s"
    rows = []
    print(f"{'scenario':<10} {'queued':>8} {'steady':>8} {'read':>7} {'match':>7} {'matching tick':>14} "
          f"{'matches':>8} {'tickets':>8} {'next tick':>10} {'left':>7} {'AOF rewrite':>11}  "
          f"{'Redis held others: longest, p99, waits > 20 ms':>10}")
    with tempfile.TemporaryDirectory() as directory:
        redis_server = RedisServer(Path(directory)).start()
        try:
            for scenario in args.scenarios.split(","):
                row = measure(redis_server, scenario, args.count, args.rounds, args.settle_s, args.aof_rewrite_first)
                rows.append(row)
                print(f"{scenario:<10} {row['queued']:>8,} {row['steady_tick_s']:>8.3f} {row['read_queue_s']:>7.3f} "
                      f"{row['match_s']:>7.3f} {row['matching_tick_s']:>14.3f} {row['matches_claimed']:>8,} "
                      f"{row['tickets_matched']:>8,} {row['next_tick_s']:>10.3f} {row['left']:>7,} "
                      f"{'during' if row['aof_rewrite_during_tick'] else 'none':>11}  "
                      f"{row['redis_waits']['max_ms']} ms, "
                      f"{row['redis_waits']['p99_ms']} ms, {row['redis_waits']['over_20ms']}", flush=True)
                if row["next_tick_us_per_ticket"] is not None:
                    print(f"{'':<10} next tick: {row['next_tick_us_per_ticket']} us for each ticket left, "
                          f"{row['next_tick_matches']} matches", flush=True)
                if "settled_tick_s" in row:
                    print(f"{'':<10} settled tick (limits no longer widening): {row['settled_tick_s']:.3f} s, "
                          f"{row['settled_tick_matches']} matches in {args.rounds}; with {ARRIVALS} arrivals "
                          f"before each: {row['arrivals_tick_s']:.3f} s, {row['arrivals_tick_matches']} matches",
                          flush=True)
        finally:
            redis_server.stop()
    by_name = {row["scenario"]: row for row in rows}
    if "1v1" in by_name and "5v5-rules" in by_name:
        base, rules = by_name["1v1"], by_name["5v5-rules"]
        ratios = {
            "steady_tick": round(rules["steady_tick_s"] / base["steady_tick_s"], 2),
            "matching_tick": round(rules["matching_tick_s"] / base["matching_tick_s"], 2),
        }
        report["ratios"] = ratios
        print(f"ratio 5v5-rules / 1v1: steady tick {ratios['steady_tick']}x, "
              f"matching tick {ratios['matching_tick']}x")
    report["results"] = rows
    report.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
