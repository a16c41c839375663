"""What the event log costs Redis: CPU per event and per player lifecycle, memory per event.

Every transition appends its event (XADD) inside the script that makes it, so the log's cost is
part of every script's cost. Redis's own command statistics count the XADDs a script makes
(`cmdstat_xadd`) apart from the script itself (`cmdstat_evalsha`), so one run gives both, side
by side, without a build of mmserver that lacks the log:

1. creation: `--tickets` tickets created through the real create script (one ticket.queued each);
2. a 1v1 tick: the real Ticker matches and claims them all (one ticket.matched each);
3. ready checks, allocation and finish for `--lifecycles` of those matches through the store,
   so that every event of a whole match is counted.

Printed per phase: script CPU (µs per ticket), XADD CPU (µs per event), the XADD share of the
scripts' CPU, and Redis memory per event (used_memory before and after, over XLEN).

    .venv/bin/python bench/bench_event_log.py [--tickets 100000] [--lifecycles 2000] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RedisServer, fill_queue  # noqa: E402

from mmserver.config import ModeConfig, ServersConfig  # noqa: E402
from mmserver.shutdown import Shutdown  # noqa: E402
from mmserver.store import Store, keys  # noqa: E402
from mmserver.ticker import Ticker  # noqa: E402

MODE = ModeConfig("duel", team_size=1, teams=2, ticket_ttl_s=7200, accept_timeout_s=60)


def command_stats(client) -> dict:
    stats = client.info("commandstats")
    return {name: (stats.get(f"cmdstat_{name}", {}).get("calls", 0), stats.get(f"cmdstat_{name}", {}).get("usec", 0))
            for name in ("evalsha", "xadd")}


def phase(client, name: str, run, tickets: int) -> dict:
    client.config_resetstat()
    events_before = client.xlen(keys.EVENT_LOG)
    run()
    stats = command_stats(client)
    events = client.xlen(keys.EVENT_LOG) - events_before
    script_us = stats["evalsha"][1]
    xadd_calls, xadd_us = stats["xadd"]
    return {"phase": name, "tickets": tickets, "events": events, "xadd_calls": xadd_calls,
            "script_us_per_ticket": round(script_us / max(1, tickets), 2),
            "xadd_us_per_event": round(xadd_us / max(1, xadd_calls), 2),
            "xadd_share_of_scripts": round(xadd_us / max(1, script_us), 3)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--lifecycles", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "event_log.json")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(Path(directory)).start()
        try:
            client = server.client(decode_responses=True, socket_timeout=None)
            store = Store(client, {"duel": MODE}, ServersConfig(static=tuple(f"10.{i // 250}.{i % 250}.1:1" for i in range(args.lifecycles))))
            memory_before = int(client.info("memory")["used_memory"])
            rows.append(phase(client, "create", lambda: fill_queue(server.url, {"duel": MODE}, "duel", args.tickets),
                              args.tickets))
            # The queued tickets' records and members are in the same figure: see the per-event
            # estimate below, from the log's own memory usage.
            event_bytes = client.memory_usage(keys.EVENT_LOG, samples=0) / max(1, client.xlen(keys.EVENT_LOG))
            ticker = Ticker(store, {"duel": MODE}, shutdown=Shutdown())
            rows.append(phase(client, "match (one tick)", ticker.tick, args.tickets))
            sessions = client.hkeys(keys.PENDING_SESSIONS)[:args.lifecycles]

            def rest_of_lifecycle() -> None:
                for sid in sessions:
                    members = store.match(sid)["teams"]
                    for team in members:
                        for player in team["players"]:
                            store.accept(player["ticket_id"], access="@b")
                while store.allocate(1000)[0]:
                    pass
                for sid in sessions:
                    store.finish_match(sid)

            rows.append(phase(client, "accept, allocate, finish", rest_of_lifecycle, 2 * len(sessions)))
            memory_after = int(client.info("memory")["used_memory"])
        finally:
            server.stop()
    print(f"{args.tickets:,} tickets 1v1; {args.lifecycles:,} matches taken to the end")
    print(f"{'phase':<26} {'tickets':>8} {'events':>8} {'script µs/ticket':>17} {'XADD µs/event':>14} {'XADD share':>10}")
    for row in rows:
        print(f"{row['phase']:<26} {row['tickets']:>8,} {row['events']:>8,} {row['script_us_per_ticket']:>17.2f} "
              f"{row['xadd_us_per_event']:>14.2f} {row['xadd_share_of_scripts']:>10.1%}")
    print(f"event log memory: {event_bytes:.0f} bytes per event (MEMORY USAGE of the stream / XLEN); "
          f"all data: {(memory_after - memory_before) / 2**20:.0f} MiB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"python": platform.python_version(), "tickets": args.tickets,
                                    "event_bytes": round(event_bytes, 1), "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
