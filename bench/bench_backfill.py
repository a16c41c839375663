"""What open backfills cost the tick (docs/BACKFILL.md), on a real redis-server.

For N open backfills (2v2 matches that each lost a player and asked for one):
- read: the tick's backfills.lua call (N backfills and their rosters);
- plan: matchmaking/backfill.py against Q queued tickets that are all within the MMR window
  but that no backfill takes: parties of two (too big for one place: skipped cheaply), then
  solo players of another `same` value (each backfill checks its 256 nearest: the worst case);
- fill: the fill.lua call for N fills that all succeed (N solo tickets near the mean);
- tick: a whole Ticker.tick() with the N backfills and N fitting solo tickets queued.

    .venv/bin/python bench/bench_backfill.py [--backfills 0,100,500] [--queue 5000]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RedisServer  # noqa: E402

from mmserver.config import ModeConfig, ServersConfig  # noqa: E402
from mmserver.matchmaking import MatchRules  # noqa: E402
from mmserver.matchmaking.backfill import Slot, plan_backfills  # noqa: E402
from mmserver.matchmaking.rules import Rule  # noqa: E402
from mmserver.shutdown import Shutdown  # noqa: E402
from mmserver.store import Store  # noqa: E402
from mmserver.ticker import Ticker  # noqa: E402

MODE = ModeConfig("squad", team_size=2, teams=2, accept_timeout_s=0, mmr_window=200,
                  mmr_window_growth_per_s=0, mmr_window_max=200, ticket_ttl_s=7200,
                  attributes=(("build", "string"),), rules=(Rule("same-build", "same", "build"),))


def ticket(store: Store, player: str, mmr: float, build: str = "a", party=()) -> str:
    view, _token = store.create_ticket(player_id=player, mode="squad", mmr=mmr, region=None, party=list(party),
                                       attributes={"build": build})
    return view["ticket_id"]


def setup(client, n: int) -> Store:
    client.flushall()
    store = Store(client, {"squad": MODE}, ServersConfig(static=tuple(f"10.2.{i // 250}.{i % 250}:1" for i in range(n))))
    ids = [ticket(store, f"m{i}", 1500) for i in range(4 * n)]
    store.read_queue("squad", None)
    proposals = [((ids[4 * i], ids[4 * i + 1]), (ids[4 * i + 2], ids[4 * i + 3])) for i in range(n)]
    results = []
    for start in range(0, n, 500):
        results += store.claim("squad", None, proposals[start:start + 500], 0)
    while store.allocate(500)[0]:
        pass
    for i, result in enumerate(results):
        store.leave_match(result.session_id, f"m{4 * i + 3}")
        store.create_backfill(result.session_id, MODE, [Slot(1, 1)], 3600)
    return store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backfills", default="0,100,500")
    parser.add_argument("--queue", type=int, default=5000)
    args = parser.parse_args()
    rules = MatchRules.from_mode(MODE)
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp)).start()
        try:
            client = redis.client(decode_responses=True)
            for n in [int(x) for x in args.backfills.split(",")]:
                store = setup(client, n)
                store.open_backfills("squad", 500)  # the script's first load is not the tick's cost
                started = time.perf_counter()
                backfills = store.open_backfills("squad", 500)
                read_s = time.perf_counter() - started
                plans = []
                for kind in ("parties", "other-build"):
                    client.delete("mm:q:squad:")  # the last queue out (its records stay, unread)
                    for i in range(args.queue):
                        if kind == "parties":
                            ticket(store, f"p{i}", 1450 + (i % 100), party=[f"p{i}b"])
                        else:
                            ticket(store, f"o{i}", 1450 + (i % 100), build="b")
                    tickets = store.read_queue("squad", None)
                    started = time.perf_counter()
                    assert plan_backfills(backfills, tickets, rules, store.now()) == []
                    plans.append(time.perf_counter() - started)
                client.delete("mm:q:squad:")
                for i in range(n):
                    ticket(store, f"s{i}", 1500)
                ticker = Ticker(store, {"squad": MODE}, shutdown=Shutdown(), mode_lock_s=0)
                result = ticker.tick()
                print(f"open backfills {n:4d}: read {read_s * 1000:6.1f} ms | plan over {args.queue} queued that "
                      f"fit none: parties {plans[0] * 1000:6.1f} ms, other build {plans[1] * 1000:6.1f} ms | "
                      f"tick filling {result.backfilled:4d}: {result.duration_s * 1000:6.1f} ms")
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
