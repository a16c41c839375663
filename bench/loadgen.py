"""The load generator: a small asyncio HTTP/1.1 client, run as its own process.

It speaks just enough HTTP for the benchmarks (keep-alive, Content-Length bodies) so that one
process can hold hundreds of connections and send thousands of requests a second without the
client's own overhead hiding the server's. Loopback only, bounded in count and time. The last
line it prints is its result as JSON.

    loadgen.py post   --url URL [--path /v1/tickets] --concurrency 32 --duration 5 [--max N]
    loadgen.py notify --url URL --redis-url URL --idle 300 --probes 200 --rate 40
    loadgen.py e2e    --url URL --rate 100 --duration 10
    loadgen.py hold   --url URL --count 50 --duration 30

Times are time.monotonic(), CLOCK_MONOTONIC: the same clock in every process of the machine,
so they compare with times taken by other processes (the Redis subscriber in `notify`).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

MAX_SECONDS = 600  # hard bound on any run


class Http:
    """One keep-alive connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None = None,
                      token: str | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if token:
            head.append(f"Authorization: Bearer {token}")
        if body is not None:
            head.append("Content-Type: application/json")
            head.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")
        try:
            self.writer.write(data)
            header = await self.reader.readuntil(b"\r\n\r\n")
            lines = header.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            payload = await self.reader.readexactly(length) if length else b""
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loadgen only targets loopback addresses")
    return parts.hostname, parts.port or 80


def _latency_summary(latencies: list[float]) -> dict:
    if not latencies:
        return {}
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": round(ordered[-1] * 1000, 3)}


def _ticket_body(player: str, mode: str, mmr: float) -> bytes:
    return json.dumps({"player_id": player, "mode": mode, "mmr": mmr}).encode()


# --- post: closed-loop load of POSTs ---------------------------------------------------------

async def post(args: argparse.Namespace) -> dict:
    host, port = _address(args.url)
    low, high = (float(x) for x in args.mmr_range.split(","))
    deadline = time.monotonic() + min(args.duration, MAX_SECONDS)
    budget = [args.max or 10**9]
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    rng = random.Random(args.seed)

    async def worker(n: int) -> None:
        http = Http(host, port)
        i = 0
        while time.monotonic() < deadline and budget[0] > 0:
            budget[0] -= 1
            body = _ticket_body(f"{args.prefix}-{n}-{i}", args.mode, round(rng.uniform(low, high)))
            i += 1
            started = time.monotonic()
            try:
                status, _ = await http.request("POST", args.path, body)
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                name = type(error).__name__
                errors[name] = errors.get(name, 0) + 1
                if args.until_refused and isinstance(error, ConnectionRefusedError):
                    break  # the server is gone (the stop benchmark): this worker is done
                await asyncio.sleep(0.01)
                continue
            latencies.append(time.monotonic() - started)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        http.close()

    started = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(args.concurrency)))
    elapsed = time.monotonic() - started
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    return {"requests": len(latencies), "ok": ok, "statuses": statuses, "errors": errors,
            "seconds": round(elapsed, 3), "ok_per_s": round(ok / elapsed, 1) if elapsed else 0.0,
            "latency_ms": _latency_summary(latencies), "concurrency": args.concurrency}


# --- notify: long-polls open, matches committed, time to each answer -------------------------

def _subscribe(redis_url: str, seen: dict[str, float], ready: threading.Event, stop: threading.Event) -> None:
    """Record when each ticket id first appears on mm:events (just after the script's commit:
    Redis publishes from inside the script)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("mm:events")
    ready.set()
    while not stop.is_set():
        message = pubsub.get_message(timeout=0.1)
        if message is None:
            continue
        at = time.monotonic()
        for ticket_id in message["data"].decode().split(","):
            seen.setdefault(ticket_id, at)
    pubsub.close()
    client.close()


async def _create(http: Http, player: str, mode: str, mmr: float) -> dict:
    status, body = await http.request("POST", "/v1/tickets", _ticket_body(player, mode, mmr))
    if status != 201:
        raise RuntimeError(f"create answered {status}: {body[:200]!r}")
    return json.loads(body)


async def _poll_until(http: Http, ticket: dict, done, stop: asyncio.Event, wait_s: int) -> tuple[dict, float]:
    """Long-poll until done(view) or stop; returns the last view and when it arrived."""
    view = ticket
    while not stop.is_set():
        path = f"/v1/tickets/{ticket['ticket_id']}?wait={wait_s}&version={view['version']}"
        status, body = await http.request("GET", path, token=ticket["token"])
        at = time.monotonic()
        if status != 200:
            raise RuntimeError(f"long-poll answered {status}: {body[:200]!r}")
        view = {**json.loads(body), "token": ticket["token"]}
        if done(view):
            return view, at
    return view, time.monotonic()


async def notify(args: argparse.Namespace) -> dict:
    host, port = _address(args.url)
    seen: dict[str, float] = {}
    ready, stop_sub = threading.Event(), threading.Event()
    subscriber = threading.Thread(target=_subscribe, args=(args.redis_url, seen, ready, stop_sub),
                                  name="subscriber", daemon=True)
    subscriber.start()
    ready.wait(10)
    stop = asyncio.Event()
    hard_deadline = time.monotonic() + min(args.timeout, MAX_SECONDS)
    # MMRs 10 apart (the benchmark's mode has a fixed window of 1): nothing matches until its
    # partner, with the same MMR, arrives.
    band = args.band

    # Creations a few at a time: what is measured is the long-polls, not a burst of creations.
    creating = asyncio.Semaphore(16)

    async def open_poll(k: int) -> tuple[Http, dict]:
        http = Http(host, port)
        async with creating:
            ticket = await _create(http, f"{args.prefix}-w{k}", args.mode, band + 10 * k)
        return http, ticket

    total = args.idle + args.probes
    opened = await asyncio.gather(*(open_poll(k) for k in range(total)))
    matched = lambda view: view["status"] != "queued"  # noqa: E731
    polls = []
    for http, ticket in opened:
        # Staggered: each long-poll's first read takes a Redis connection for a moment, and
        # hundreds at once would measure the connection pool, not the notification.
        polls.append(asyncio.create_task(_poll_until(http, ticket, matched, stop, 30)))
        await asyncio.sleep(0.002)
    await asyncio.sleep(args.settle)  # every long-poll is waiting in the server now
    seen.clear()  # the creations published these ids too: only what comes next is the match
    probe_ids = [ticket["ticket_id"] for _, ticket in opened[args.idle:]]
    partner = Http(host, port)
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    next_at = time.monotonic()
    for k in range(args.idle, total):
        if interval:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
        await _create(partner, f"{args.prefix}-p{k}", args.mode, band + 10 * k)
    partner.close()
    latencies = []
    missing = 0
    errors: dict[str, int] = {}
    for k, task in enumerate(polls[args.idle:]):
        remaining = hard_deadline - time.monotonic()
        try:
            view, answered_at = await asyncio.wait_for(asyncio.shield(task), max(0.1, remaining))
        except asyncio.TimeoutError:
            missing += 1
            continue
        except Exception as error:  # an error answer (e.g. 503) is a figure, not a crash
            text = str(error)[:60]
            errors[text] = errors.get(text, 0) + 1
            continue
        published = seen.get(probe_ids[k])
        if view["status"] == "queued" or published is None:
            missing += 1
            continue
        latencies.append(answered_at - published)
    stop.set()
    # Cancel the idle tickets: their long-polls then answer at once and free their server
    # threads (closing the connection alone would leave each waiting out its 30 s).
    cancelling = asyncio.Semaphore(16)

    async def cancel(ticket: dict) -> None:
        async with cancelling:
            http = Http(host, port)
            try:
                await http.request("DELETE", f"/v1/tickets/{ticket['ticket_id']}", token=ticket["token"])
            finally:
                http.close()

    await asyncio.gather(*(cancel(ticket) for _, ticket in opened[:args.idle]), return_exceptions=True)
    await asyncio.wait(polls[:args.idle], timeout=5)
    for task in polls[:args.idle]:
        task.cancel()
    for http, _ in opened:
        http.close()
    stop_sub.set()
    subscriber.join(2)
    return {"long_polls_open": total, "probes": args.probes, "answered": len(latencies), "missing": missing,
            "errors": errors,
            "latency_ms": _latency_summary(latencies), "rate_per_s": args.rate}


# --- e2e: steady arrivals, creation to assignment ------------------------------------------

async def e2e(args: argparse.Namespace) -> dict:
    host, port = _address(args.url)
    rng = random.Random(args.seed)
    stop = asyncio.Event()
    client_s: list[float] = []
    server_s: list[float] = []
    failures: dict[str, int] = {}

    async def one(k: int) -> None:
        http = Http(host, port)
        started = time.monotonic()
        try:
            ticket = await _create(http, f"{args.prefix}-{k}", args.mode, round(rng.uniform(1000, 1050)))
            view, at = await _poll_until(http, ticket, lambda v: v["status"] != "queued" and v["status"] != "matched",
                                         stop, 10)
            if view["status"] == "assigned":
                client_s.append(at - started)
                server_s.append(view["updated_at"] - view["enqueued_at"])
            else:
                failures[view["status"]] = failures.get(view["status"], 0) + 1
        except Exception as error:  # counted, not fatal: the figure says how many
            name = type(error).__name__
            failures[name] = failures.get(name, 0) + 1
        finally:
            http.close()

    tasks = []
    interval = 1.0 / args.rate
    started = time.monotonic()
    count = int(args.rate * min(args.duration, MAX_SECONDS))
    for k in range(count):
        await asyncio.sleep(max(0.0, started + k * interval - time.monotonic()))
        tasks.append(asyncio.create_task(one(k)))
    sent_s = time.monotonic() - started
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), args.drain)
    except asyncio.TimeoutError:
        stop.set()
        failures["unfinished"] = sum(1 for t in tasks if not t.done())
        for task in tasks:
            task.cancel()
    return {"tickets": count, "arrival_per_s": round(count / sent_s, 1), "assigned": len(client_s),
            "failures": failures, "client_ms": _latency_summary(client_s),
            "server_ms": _latency_summary(server_s)}


# --- hold: long-polls held open (for the stop benchmark) -------------------------------------

async def hold(args: argparse.Namespace) -> dict:
    """Open `count` long-polls and keep re-polling until `duration` passes or the server goes;
    counts the answers by status and the connection errors. With `--tickets FILE`, the tickets
    are read from FILE if it exists, else created and written there: several runs then hold
    long-polls on the same tickets (the queue the matcher sees is the same with and without)."""
    host, port = _address(args.url)
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    tickets_file = Path(args.tickets) if args.tickets else None
    if tickets_file is not None and tickets_file.exists():
        tickets = json.loads(tickets_file.read_text())[:args.count]
    else:
        creating = asyncio.Semaphore(16)

        async def create(k: int) -> dict:
            http = Http(host, port)
            try:
                async with creating:
                    return await _create(http, f"{args.prefix}-{k}", args.mode, 50_000 + 5 * k)
            finally:
                http.close()

        tickets = await asyncio.gather(*(create(k) for k in range(args.count)))
        if tickets_file is not None:
            tickets_file.write_text(json.dumps(tickets))
    deadline = time.monotonic() + min(args.duration, MAX_SECONDS)

    async def one(k: int, ticket: dict) -> None:
        # Staggered: thousands of connects at once would overflow the listen backlog.
        await asyncio.sleep(k * args.stagger)
        http = Http(host, port)
        try:
            version = ticket["version"]
            while time.monotonic() < deadline:
                path = f"/v1/tickets/{ticket['ticket_id']}?wait={args.wait}&version={version}"
                status, _ = await http.request("GET", path, token=ticket["token"])
                statuses[str(status)] = statuses.get(str(status), 0) + 1
        except (OSError, asyncio.IncompleteReadError, RuntimeError) as error:
            errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
        finally:
            http.close()

    await asyncio.wait_for(asyncio.gather(*(one(k, t) for k, t in enumerate(tickets))),
                           args.duration + args.wait + len(tickets) * args.stagger + 5)
    return {"long_polls": len(tickets), "statuses": statuses, "errors": errors}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("post")
    p.add_argument("--url", required=True)
    p.add_argument("--path", default="/v1/tickets")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--max", type=int, default=0, help="stop after this many requests (0: no cap)")
    p.add_argument("--prefix", default="p")
    p.add_argument("--mode", default="duel")
    p.add_argument("--mmr-range", default="0,3000")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--until-refused", action="store_true", help="a worker stops at a refused connection")
    n = sub.add_parser("notify")
    n.add_argument("--url", required=True)
    n.add_argument("--redis-url", required=True)
    n.add_argument("--idle", type=int, default=300, help="long-polls that stay open throughout")
    n.add_argument("--probes", type=int, default=200, help="long-polls whose ticket gets matched")
    n.add_argument("--rate", type=float, default=40.0, help="partners created per second (0: all at once)")
    n.add_argument("--settle", type=float, default=1.0)
    n.add_argument("--band", type=int, default=0, help="MMR offset of this run's tickets")
    n.add_argument("--prefix", default="n")
    n.add_argument("--mode", default="duel")
    n.add_argument("--timeout", type=float, default=60.0)
    e = sub.add_parser("e2e")
    e.add_argument("--url", required=True)
    e.add_argument("--rate", type=float, default=100.0)
    e.add_argument("--duration", type=float, default=10.0)
    e.add_argument("--drain", type=float, default=30.0, help="seconds to wait for the last assignments")
    e.add_argument("--prefix", default="e")
    e.add_argument("--mode", default="duel")
    e.add_argument("--seed", type=int, default=1)
    h = sub.add_parser("hold")
    h.add_argument("--url", required=True)
    h.add_argument("--count", type=int, default=50)
    h.add_argument("--duration", type=float, default=30.0)
    h.add_argument("--prefix", default="h")
    h.add_argument("--mode", default="duel")
    h.add_argument("--wait", type=int, default=30, help="each long-poll's wait=")
    h.add_argument("--stagger", type=float, default=0.0005, help="seconds between two first requests")
    h.add_argument("--tickets", help="a JSON file of tickets to hold (created and written if missing)")
    args = parser.parse_args(argv)
    result = asyncio.run({"post": post, "notify": notify, "e2e": e2e, "hold": hold}[args.command](args))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["loadgen_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 3)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
