"""The fleet model checked: what one Redis serves, predicted from per-operation costs, against a
real run of 3 replicas on one Redis.

The model (docs/PERFORMANCE.md, "The fleet model"): Redis CPU per second =
    idle (the replicas' ticks and heartbeats with nothing to do)
  + players/s x L  (one player's whole life: create, one read, match, accept, allocation, finish)
  + extra polls/s x P (each poll beyond the lifecycle's one read)
with L and P from bench_redis_cpu.py (`--lifecycle-us`, `--poll-us`; defaults: its figures
in PERFORMANCE.md, 1v1, view cache on).

The check: a real redis-server (append-only file on) and 3 real `mmserver` replicas behind a
client that picks a replica at random per request, as a load balancer would. Players arrive at
`--rate` per second for `--duration` seconds; each creates a ticket, polls it every
`--poll-interval` s (plain GETs, not long-polls) until it is matched, accepts, polls until
assigned, and the first player of team 0 reports the match over as its server would. The
replicas' idle cost is measured first, for `--idle` seconds. Redis CPU is the redis-server
process's user + system time (`INFO cpu`) over each phase. Printed: the operations made, Redis
CPU measured and predicted, and their ratio; then one replica's poll throughput (32
connections reading 200 tickets it has cached), which sizes the replica count in the model.

    .venv/bin/python bench/bench_fleet.py [--rate 60] [--duration 20] [--out PATH]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import MMServer, RedisServer  # noqa: E402
from loadgen import Http, _address  # noqa: E402

SERVER_TOKEN = "fleet-server-token-0123456789"
CONFIG = f"""
[modes.duel]
accept_timeout_s = 30
mmr_window = 1000
ticket_ttl_s = 120

[modes.hold]                 # the poll-throughput tickets: nothing ever matches
mmr_window = 0
mmr_window_growth_per_s = 0
mmr_window_max = 0
ticket_ttl_s = 120

[servers]
token = "{SERVER_TOKEN}"
static = [{", ".join(f'"10.1.{i // 250}.{i % 250 + 1}:7777"' for i in range(3000))}]
"""
# bench_redis_cpu.py's figures (docs/PERFORMANCE.md, "Redis CPU per player and per poll", 1v1,
# cache on): µs of Redis process CPU per player lifecycle and per poll.
LIFECYCLE_US = 187.9
POLL_US = 6.6
READ_MISS_US = 23.1  # a read the view cache could not answer (cache off: one read script)


def by_script(client) -> dict:
    """µs and calls per script name, from the SLOWLOG (every EVALSHA logged with its SHA)."""
    from mmserver.store.scripts import NAMES, Scripts

    scripts = Scripts(client)
    names = {scripts._sha(name): name for name in NAMES}  # the same sources the replicas load
    totals: dict = {}
    for entry in client.slowlog_get(200_000):
        command = entry["command"]
        command = command.decode() if isinstance(command, bytes) else command
        parts = command.split()
        if parts and parts[0].upper() == "EVALSHA" and len(parts) > 1:
            row = totals.setdefault(names.get(parts[1], parts[1][:8]), {"calls": 0, "usec": 0})
            row["calls"] += 1
            row["usec"] += entry["duration"]
    return totals


def redis_cpu_s(client) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class Counts:
    def __init__(self) -> None:
        self.created = self.polls = self.accepts = self.finishes = self.assigned = 0
        self.failures: dict[str, int] = {}

    def fail(self, what: str) -> None:
        self.failures[what] = self.failures.get(what, 0) + 1


async def player(k: int, urls: list[str], poll_s: float, counts: Counts, rng: random.Random, give_up: float) -> None:
    connections = {url: Http(*_address(url)) for url in urls}

    async def send(method: str, path: str, body: dict | None = None, token: str | None = None):
        http = connections[rng.choice(urls)]
        status, payload = await http.request(method, path, json.dumps(body).encode() if body is not None else None,
                                             token)
        return status, (json.loads(payload) if payload else {})

    try:
        status, ticket = await send("POST", "/v1/tickets", {"player_id": f"fleet-{k}", "mode": "duel",
                                                           "mmr": rng.randint(1000, 1100)})
        if status != 201:
            counts.fail(f"create_{status}")
            return
        counts.created += 1
        path, token = f"/v1/tickets/{ticket['ticket_id']}", ticket["token"]
        accepted = False
        while time.monotonic() < give_up:
            await asyncio.sleep(poll_s)
            status, view = await send("GET", path, token=token)
            counts.polls += 1
            if status != 200:
                counts.fail(f"poll_{status}")
                return
            if view["status"] == "matched" and not accepted and view.get("session", {}).get("state") == "accepting":
                status, _ = await send("POST", f"{path}/accept", token=token)
                counts.accepts += 1
                accepted = status == 200
            elif view["status"] == "assigned":
                counts.assigned += 1
                assignment = view["assignment"]
                if assignment["teams"][0][0] == f"fleet-{k}":
                    await asyncio.sleep(rng.uniform(0.5, 1.5))  # the match is played
                    status, _ = await send("POST", f"/v1/matches/{assignment['match_id']}/finish",
                                           token=SERVER_TOKEN)
                    counts.finishes += 1
                return
            elif view["status"] in ("cancelled", "expired", "finished"):
                counts.fail(view["status"])
                return
        counts.fail("unfinished")
    except Exception as error:  # counted: the figure says how many
        counts.fail(type(error).__name__)
    finally:
        for http in connections.values():
            http.close()


async def load(urls: list[str], rate: float, duration: float, poll_s: float, seed: int) -> Counts:
    counts = Counts()
    rng = random.Random(seed)
    started = time.monotonic()
    give_up = started + duration + 60
    tasks = []
    for k in range(int(rate * duration)):
        await asyncio.sleep(max(0.0, started + k / rate - time.monotonic()))
        tasks.append(asyncio.create_task(player(k, urls, poll_s, counts, random.Random(rng.random()), give_up)))
    await asyncio.gather(*tasks)
    return counts


async def poll_throughput(url: str, tickets: list[dict], seconds: float, connections: int = 32) -> float:
    done = 0
    deadline = time.monotonic() + seconds

    async def worker(i: int) -> None:
        nonlocal done
        http = Http(*_address(url))
        try:
            while time.monotonic() < deadline:
                ticket = tickets[(i + done) % len(tickets)]
                status, _ = await http.request("GET", f"/v1/tickets/{ticket['ticket_id']}", token=ticket["token"])
                if status == 200:
                    done += 1
        finally:
            http.close()

    await asyncio.gather(*(worker(i) for i in range(connections)))
    return done / seconds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=60.0, help="players arriving per second")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--lifecycle-us", type=float, default=LIFECYCLE_US)
    parser.add_argument("--poll-us", type=float, default=POLL_US)
    parser.add_argument("--read-miss-us", type=float, default=READ_MISS_US)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--by-script", action="store_true",
                        help="also log every command (SLOWLOG at 0 µs) and print µs per script by name")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fleet.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        redis = RedisServer(root / "redis").start()
        replicas: list[MMServer] = []
        try:
            config = root / "mm.toml"
            config.write_text(CONFIG)
            for i in range(args.replicas):
                replicas.append(MMServer(root / f"r{i}", redis_url=redis.url,
                                         env={"MMSERVER_CONFIG": str(config)}).start())
            for replica in replicas:
                replica.wait_ready()
            client = redis.client(decode_responses=True)
            urls = [replica.url for replica in replicas]
            time.sleep(1.0)  # the first ticks (static pool seeded) are not "idle"
            before = redis_cpu_s(client)
            time.sleep(args.idle)
            idle_per_s = (redis_cpu_s(client) - before) / args.idle
            client.config_resetstat()
            if args.by_script:
                client.config_set("slowlog-log-slower-than", 0)
                client.config_set("slowlog-max-len", 200_000)
                client.slowlog_reset()
            before, started = redis_cpu_s(client), time.monotonic()
            counts = asyncio.run(load(urls, args.rate, args.duration, args.poll_interval, args.seed))
            time.sleep(1.5)  # the last allocation and finish ticks
            elapsed = time.monotonic() - started
            measured_s = redis_cpu_s(client) - before
            # Where Redis's time went: commands' own time (scripts include what they call).
            stats = client.info("commandstats")
            commands = sorted(((name[len("cmdstat_"):], v["calls"], v["usec"]) for name, v in stats.items()),
                              key=lambda row: -row[2])
            command_s = sum(usec for name, _calls, usec in commands) / 1e6
            scripts = by_script(client) if args.by_script else {}
            lifecycles = counts.assigned
            extra_polls = max(0, counts.polls - lifecycles)
            predicted_s = (idle_per_s * elapsed + lifecycles * args.lifecycle_us / 1e6
                           + extra_polls * args.poll_us / 1e6)
            # The same with the replicas' own count of reads their cache missed: those polls
            # cost a read script, not a share of a batched refresh.
            misses = sum(replica.admin("/admin/status").json()["view_cache"]["misses"] for replica in replicas)
            extra_misses = max(0, min(extra_polls, misses - lifecycles))
            predicted_miss_aware_s = (predicted_s + extra_misses * (args.read_miss_us - args.poll_us) / 1e6)
            # One replica's poll throughput on tickets it has cached (a queue nothing matches).
            tickets = [replicas[0].post("/v1/tickets", {"player_id": f"idle-{i}", "mode": "hold",
                                                        "mmr": 10 * i}).json() for i in range(200)]
            polls_per_s = asyncio.run(poll_throughput(replicas[0].url, tickets, 5.0))
        finally:
            for replica in replicas:
                replica.kill()
            redis.stop()
    result = {
        "python": platform.python_version(), "replicas": args.replicas, "rate": args.rate,
        "duration_s": args.duration, "poll_interval_s": args.poll_interval,
        "created": counts.created, "assigned": counts.assigned, "polls": counts.polls,
        "accepts": counts.accepts, "finishes": counts.finishes, "failures": counts.failures,
        "idle_redis_cpu_per_s": round(idle_per_s, 5), "elapsed_s": round(elapsed, 2),
        "redis_cpu_measured_s": round(measured_s, 3), "redis_cpu_predicted_s": round(predicted_s, 3),
        "measured_over_predicted": round(measured_s / predicted_s, 3) if predicted_s else None,
        "cache_misses": misses, "redis_cpu_predicted_miss_aware_s": round(predicted_miss_aware_s, 3),
        "measured_over_miss_aware": round(measured_s / predicted_miss_aware_s, 3) if predicted_miss_aware_s else None,
        "lifecycle_us": args.lifecycle_us, "poll_us": args.poll_us,
        "replica_polls_per_s": round(polls_per_s, 1),
        "commands_s": round(command_s, 3),
        "top_commands": [{"command": name, "calls": calls, "usec": usec} for name, calls, usec in commands[:8]],
        "scripts": scripts,
    }
    print(f"{args.replicas} replicas, {args.rate:g} players/s for {args.duration:g} s, polls every "
          f"{args.poll_interval:g} s")
    print(f"players created {counts.created}, assigned {counts.assigned}, polls {counts.polls}, "
          f"accepts {counts.accepts}, matches finished {counts.finishes}, failures {counts.failures}")
    print(f"Redis CPU idle {idle_per_s * 1000:.1f} ms/s; under load {measured_s:.3f} s measured vs "
          f"{predicted_s:.3f} s predicted (ratio {result['measured_over_predicted']}); counting the "
          f"{misses} reads the caches missed as read scripts: {predicted_miss_aware_s:.3f} s "
          f"(ratio {result['measured_over_miss_aware']})")
    print(f"of which commands' own time {command_s:.3f} s: " + ", ".join(
        f"{name} {calls} calls {usec / 1e6:.3f} s" for name, calls, usec in commands[:6]))
    for name, row in sorted(scripts.items(), key=lambda item: -item[1]["usec"]):
        print(f"  {name:<16} {row['calls']:>6} calls {row['usec'] / 1e6:.3f} s ({row['usec'] / max(1, row['calls']):.0f} µs each)")
    print(f"one replica's poll throughput (cached tickets, 32 connections): {polls_per_s:,.0f}/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
