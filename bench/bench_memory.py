"""Redis memory per queued ticket, and the mmserver process's RSS, at 100,000 queued tickets.

A real redis-server (append-only file on) and the real `mmserver` command on it, ticking every
500 ms. Tickets are created through the store's own create script (several processes), with
integer MMRs (as most games keep them) spaced wider than the mode's window, so that they all
stay queued: every tick reads and parses the whole queue, which is what a replica holds in
memory at that size.

Figures: Redis `used_memory` growth per ticket, and MEMORY USAGE of the parts (one ticket's
hash, the queue's sorted set and the player index, per ticket); mmserver's VmRSS before the
fill and after a few ticks over the full queue, and its peak (VmHWM).

    .venv/bin/python bench/bench_memory.py [--tickets 100000] [--rounds 1]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RedisServer, Report, fill_queue, median, mmserver, rss_kb, write_config,
)

from mmserver.config import ModeConfig  # noqa: E402
from mmserver.store import keys  # noqa: E402

# A window far below the MMR spacing of the fill: nothing matches, the queue stays full.
MODE = ModeConfig("duel", mmr_window=0.1, mmr_window_growth_per_s=0.0, mmr_window_max=0.1, ticket_ttl_s=3600)


def one_round(directory: Path, count: int, settle_s: float, r: int) -> dict:
    redis_server = RedisServer(directory / f"redis{r}").start()
    config = write_config(directory / "mm.toml", {"duel": {
        "team_size": 1, "teams": 2, "accept_timeout_s": 10, "mmr_window": MODE.mmr_window,
        "mmr_window_growth_per_s": 0, "mmr_window_max": MODE.mmr_window_max, "ticket_ttl_s": 3600}})
    server = mmserver(directory / f"mm{r}", redis_server.url, env={"MMSERVER_CONFIG": str(config)})
    client = redis_server.client(decode_responses=True)
    try:
        server.start().wait_ready()
        time.sleep(1.0)
        rss_empty = rss_kb(server.process.pid)
        before = int(client.info("memory")["used_memory"])
        fill_queue(redis_server.url, {"duel": MODE}, "duel", count, mmr_step=1.0, prefix=f"m{r}-")
        after = int(client.info("memory")["used_memory"])
        queue = keys.queue("duel", None)
        queued = client.zcard(queue)
        if queued != count:
            raise RuntimeError(f"{queued} queued of {count}: the fill matched or lost tickets")
        sample = client.zrange(queue, 0, 0)[0].split("|")[0]
        time.sleep(settle_s)  # several ticks over the full queue
        rss_full = rss_kb(server.process.pid)
        redis_rss = rss_kb(redis_server.process.pid)
        if server.process.poll() is not None:
            raise RuntimeError(f"mmserver exited:\n{server.output()[-2000:]}")
        return {
            "round": r,
            "tickets": queued,
            "redis_bytes_per_ticket": round((after - before) / queued, 1),
            # A queued ticket is a record in a bucket hash (mm:tq:*): its share of the buckets.
            "ticket_record_bytes": round(_keys_bytes(client, "mm:tq:*") / queued, 1),
            "ticket_bucket_encoding": client.object("encoding", keys.queued_tickets(sample)),
            "queue_bytes_per_ticket": round(client.memory_usage(queue, samples=0) / queued, 1),
            "player_index_bytes_per_ticket": round(_keys_bytes(client, "mm:pl:*") / queued, 1),
            # Why each queued ticket waits (its view's matching.blocked_by), written by the tick.
            "explanation_bytes_per_ticket": round(_key_bytes(client, keys.why("duel", None)) / queued, 1),
            # Each creation appends its ticket.queued event: the log keeps it for its own
            # retention and length bound, whether the ticket is still queued or not.
            "event_log_bytes_per_ticket": round(_key_bytes(client, keys.EVENT_LOG) / queued, 1),
            "redis_rss_mib": round(redis_rss["VmRSS"] / 1024, 1),
            "mmserver_rss_empty_mib": round(rss_empty["VmRSS"] / 1024, 1),
            "mmserver_rss_full_mib": round(rss_full["VmRSS"] / 1024, 1),
            "mmserver_peak_rss_mib": round(rss_full["VmHWM"] / 1024, 1),
        }
    finally:
        client.close()
        server.kill()
        redis_server.stop()



def _key_bytes(client, key: str) -> int:
    return client.memory_usage(key, samples=0) or 0


def _keys_bytes(client, pattern: str) -> int:
    return sum(client.memory_usage(key, samples=0) or 0 for key in client.scan_iter(pattern, count=1000))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of ticks before the RSS reading")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    report = Report("memory", vars(args) | {"out": None})
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for r in range(args.rounds):
            row = one_round(Path(directory), args.tickets, args.settle, r)
            rows.append(row)
            print(f"round {r}: {row}", flush=True)
    summary = {key: median([row[key] for row in rows]) for key in (
        "redis_bytes_per_ticket", "queue_bytes_per_ticket", "player_index_bytes_per_ticket",
        "explanation_bytes_per_ticket", "event_log_bytes_per_ticket",
        "mmserver_rss_empty_mib", "mmserver_rss_full_mib", "mmserver_peak_rss_mib")}
    summary["ticket_record_bytes"] = rows[-1]["ticket_record_bytes"]
    report["rounds"] = rows
    report["summary"] = summary
    report["target"] = "<= 300 bytes of Redis memory per queued ticket"
    print(f"summary: {summary}")
    report.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
