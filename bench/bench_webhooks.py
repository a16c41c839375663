"""Webhook delivery by one replica: commit-to-received latency and events delivered per second.

The real `mmserver` command with a [webhooks] table, on a real redis-server; the receiver is a
real local HTTP/1.1 server in this process (tests/webhook_receiver.py) that verifies every
signature and answers 200. Events are appended to the event log (`mm:ev`) directly, in exactly
the shape the Lua scripts write them, so the figure is delivery alone, not the transitions.

- steady: `--rate` events a second for `--seconds`; latency from the event id's time (Redis's
  clock, the commit) to the receiver reading the request, p50/p99.
- burst: `--burst` events appended at once; delivered per second from the first arrival to the
  last (one delivery thread, one keep-alive connection).

    .venv/bin/python bench/bench_webhooks.py [--rate 200] [--seconds 10] [--burst 5000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RedisServer, Report, median, mmserver, ms, percentile  # noqa: E402

from mmserver.store import keys  # noqa: E402
from tests.waiting import wait_until  # noqa: E402
from tests.webhook_receiver import WebhookReceiver  # noqa: E402

SECRET = "bench-webhook-secret-5f0e9a1c"


def append(client, count: int, tag: str) -> None:
    with client.pipeline(transaction=False) as pipe:
        for i in range(count):
            pipe.xadd(keys.EVENT_LOG, {"y": "ticket.queued", "t": f"{tag}{i}", "m": "", "o": "duel",
                                       "d": '{"player_id":"p","mmr":1500}'})
        pipe.execute()


def wait_delivered(receiver: WebhookReceiver, count: int, timeout: float) -> None:
    if not wait_until(lambda: len(receiver.delivered_ids()) >= count, timeout):
        raise RuntimeError(f"only {len(receiver.delivered_ids())} of {count} events delivered")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="steady events per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    report = Report("webhooks", vars(args) | {"out": None})
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        redis_server = RedisServer(directory / "redis").start()
        receiver = WebhookReceiver(SECRET).start()
        (directory / "secret").write_text(SECRET)
        config = directory / "mm.toml"
        config.write_text(f'[modes.duel]\naccept_timeout_s = 0\n\n[webhooks]\nurl = "{receiver.url}"\n'
                          f'secret_file = "{directory / "secret"}"\n')
        server = mmserver(directory / "mm", redis_server.url, env={"MMSERVER_CONFIG": str(config)})
        client = redis_server.client(decode_responses=True)
        try:
            server.start().wait_ready()
            if not wait_until(lambda: any(g["name"] == keys.WEBHOOK_GROUP for g in _groups(client)), 10,
                              interval=0.05):
                raise RuntimeError("the replica did not create the consumer group")
            total = 0
            for r in range(args.rounds):
                # steady
                start_count = len(receiver.received)
                count = int(args.rate * args.seconds)
                started = time.monotonic()
                for i in range(count):
                    target = started + i / args.rate
                    delay = target - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    append(client, 1, f"s{r}-{i}-")
                total += count
                wait_delivered(receiver, total, 60)
                latencies = [x.at - x.event["at"] for x in receiver.received[start_count:]]
                # burst
                start_count = len(receiver.received)
                append(client, args.burst, f"b{r}-")
                total += args.burst
                wait_delivered(receiver, total, 120)
                arrivals = [x.at for x in receiver.received[start_count:]]
                span = max(arrivals) - min(arrivals)
                row = {"round": r, "steady_events": count, "steady_rate": args.rate,
                       "latency_p50_ms": ms(percentile(latencies, 50)),
                       "latency_p99_ms": ms(percentile(latencies, 99)),
                       "latency_max_ms": ms(max(latencies)),
                       "burst_events": args.burst,
                       "burst_delivered_per_s": round(args.burst / span, 1) if span > 0 else None}
                rows.append(row)
                print(f"round {r}: steady {count} events at {args.rate:g}/s: commit->received p50 "
                      f"{row['latency_p50_ms']} ms p99 {row['latency_p99_ms']} ms; burst of {args.burst}: "
                      f"{row['burst_delivered_per_s']} events/s delivered", flush=True)
            if receiver.bad_signatures():
                raise RuntimeError(f"{len(receiver.bad_signatures())} bad signatures")
            if server.process.poll() is not None:
                raise RuntimeError(f"mmserver exited during the run:\n{server.output()[-2000:]}")
        finally:
            server.kill()
            receiver.stop()
            redis_server.stop()
    summary = {
        "latency_p50_ms_median": median([row["latency_p50_ms"] for row in rows]),
        "latency_p99_ms_median": median([row["latency_p99_ms"] for row in rows]),
        "burst_delivered_per_s_median": median([row["burst_delivered_per_s"] for row in rows
                                                if row["burst_delivered_per_s"]]),
        "delivered": sum(row["steady_events"] + row["burst_events"] for row in rows),
    }
    print(f"median of {len(rows)} rounds: p50 {summary['latency_p50_ms_median']} ms, p99 "
          f"{summary['latency_p99_ms_median']} ms, {summary['burst_delivered_per_s_median']} events/s")
    report["rounds"] = rows
    report["summary"] = summary
    report.write(args.out)
    return 0


def _groups(client) -> list:
    try:
        return client.xinfo_groups(keys.EVENT_LOG)
    except Exception:
        return []  # no stream yet


if __name__ == "__main__":
    sys.exit(main())
