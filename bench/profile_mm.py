"""Where the time goes: profiles behind the figures of docs/PERFORMANCE.md.

    profile_mm.py create [--seconds 6]   py-spy on the real mmserver process under the creation
                                      load: share of samples by thread kind and the heaviest
                                      frames (needs py-spy: pip install -e '.[bench]')
    profile_mm.py tick [--tickets 100000] cProfile of one matching tick over a full queue, and
                                      Redis's own time per command (INFO commandstats)
    profile_mm.py request [--requests 3000] one request path without HTTP or threads: the app
                                      called as WSGI, single-threaded, on a real Redis

Each prints a short table; `--out` writes it as JSON too.
"""
from __future__ import annotations

import argparse
import collections
import cProfile
import io
import json
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RedisServer, fill_queue, mmserver, run_loadgen  # noqa: E402


def _frame_key(frame: str) -> str:
    """'function (path:line)' -> 'function (path)': lines of one function add up."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0]})" if where else name


def _summarise_raw(path: Path, top: int) -> dict:
    by_thread: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        if any("handler_thread" in f for f in frames):
            kind = "http worker"
        elif any("wasyncore.py" in f and f.startswith("loop") for f in frames):
            kind = "http loop"
        elif any("subscriber.py" in f for f in frames):
            kind = "subscriber"
        elif any("ticker.py" in f for f in frames):
            kind = "tick"
        else:
            kind = "other"
        by_thread[kind] += n
        for key in {_frame_key(f) for f in frames if "threading.py" not in f}:
            inclusive[key] += n
    share = lambda n: round(100 * n / total, 1) if total else 0.0  # noqa: E731
    return {"samples": total,
            "by_thread_pct": {k: share(v) for k, v in by_thread.most_common()},
            "inclusive_pct": [(k, share(v)) for k, v in inclusive.most_common(top)]}


def profile_create(args: argparse.Namespace) -> dict:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install -e '.[bench]'")
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        redis_server = RedisServer(directory / "redis").start()
        server = mmserver(directory / "mm", redis_server.url)
        try:
            server.start().wait_ready()
            raw = directory / "profile.txt"
            recorder = subprocess.Popen([spy, "record", "-p", str(server.process.pid), "-d", str(max(1, round(args.seconds))),
                                         "-r", "200", "-f", "raw", "-o", str(raw), "--nonblocking"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            load = run_loadgen(["post", "--url", server.url, "--concurrency", "32",
                                "--duration", str(args.seconds)], timeout=args.seconds + 60)
            recorder.wait(60)
            if not raw.exists():
                raise SystemExit(f"py-spy wrote nothing: {recorder.stderr.read()[-500:]}")
            result = _summarise_raw(raw, args.top)
        finally:
            server.kill()
            redis_server.stop()
    result["load"] = {"ok_per_s": load["ok_per_s"], "latency_ms": load["latency_ms"]}
    print(f"{load['ok_per_s']} creations/s; samples by thread: {result['by_thread_pct']}")
    for frame, pct in result["inclusive_pct"]:
        print(f"{pct:6.1f}%  {frame}")
    return result


def _stats_table(profile: cProfile.Profile, top: int) -> list[tuple[str, float, float]]:
    stats = pstats.Stats(profile, stream=io.StringIO())
    rows = []
    for (filename, line, name), (_cc, _nc, tottime, cumtime, _callers) in stats.stats.items():
        rows.append((f"{name} ({Path(filename).name}:{line})", round(tottime, 4), round(cumtime, 4)))
    rows.sort(key=lambda row: row[2], reverse=True)
    return rows[:top]


def profile_tick(args: argparse.Namespace) -> dict:
    from mmserver.config import ModeConfig, ServersConfig
    from mmserver.shutdown import Shutdown
    from mmserver.store import Store
    from mmserver.ticker import Ticker

    mode = ModeConfig("duel", ticket_ttl_s=7200)
    with tempfile.TemporaryDirectory() as directory:
        redis_server = RedisServer(Path(directory)).start()
        try:
            fill_queue(redis_server.url, {"duel": mode}, "duel", args.tickets)
            client = redis_server.client(decode_responses=True)
            client.config_resetstat()
            store = Store(client, {"duel": mode}, ServersConfig())
            profile = cProfile.Profile()
            started = time.perf_counter()
            profile.enable()
            tick = Ticker(store, {"duel": mode}, shutdown=Shutdown()).tick()
            profile.disable()
            elapsed = time.perf_counter() - started
            redis_time = {name.removeprefix("cmdstat_"): {"calls": s["calls"], "usec": s["usec"]}
                          for name, s in client.info("commandstats").items() if s["usec"] > 1000}
            client.close()
        finally:
            redis_server.stop()
    result = {"tickets": args.tickets, "tick_s_profiled": round(elapsed, 3),
              "claimed": tick.matches_claimed, "redis_usec_by_command": redis_time,
              "python_cumulative": _stats_table(profile, args.top)}
    print(f"tick over {args.tickets:,} tickets: {elapsed:.3f} s under cProfile, {tick.matches_claimed:,} claimed")
    print("Redis time by command:", json.dumps(redis_time))
    for name, tottime, cumtime in result["python_cumulative"]:
        print(f"{cumtime:8.3f} s cumulative {tottime:8.3f} s own  {name}")
    return result


def profile_request(args: argparse.Namespace) -> dict:
    import falcon.testing

    from mmserver.config import Config
    from mmserver.http.app import create_public_app
    from mmserver.http.waiters import Waiters
    from mmserver.metrics import Metrics
    from mmserver.readiness import Readiness
    from mmserver.redis_client import connect
    from mmserver.store import Store

    with tempfile.TemporaryDirectory() as directory:
        redis_server = RedisServer(Path(directory)).start()
        try:
            config = Config()
            client = connect(redis_server.url)
            store = Store(client, config.modes, config.servers)
            readiness = Readiness()
            readiness.mark_started()
            readiness.set_redis_connected(True)
            app = create_public_app(store=store, waiters=Waiters(12), readiness=readiness, config=config,
                                    middleware=[Metrics().http_middleware()])
            count = args.requests

            def call(i: int) -> None:
                body = json.dumps({"player_id": f"p{i}", "mode": "duel", "mmr": 1500 + i % 100}).encode()
                env = falcon.testing.create_environ("/v1/tickets", method="POST", body=body,
                                                    headers={"Content-Type": "application/json"})
                status = []
                b"".join(app(env, lambda s, h, e=None: status.append(s)))
                if not status[0].startswith("201"):
                    raise RuntimeError(status[0])

            for i in range(200):
                call(i)
            started = time.perf_counter()
            for i in range(200, 200 + count):
                call(i)
            per_request_us = (time.perf_counter() - started) / count * 1e6
            started = time.perf_counter()
            for i in range(count):
                client.ping()
            ping_us = (time.perf_counter() - started) / count * 1e6
            profile = cProfile.Profile()
            profile.enable()
            for i in range(200 + count, 200 + 2 * count):
                call(i)
            profile.disable()
            client.close()
        finally:
            redis_server.stop()
    result = {"requests": count, "per_request_us": round(per_request_us, 1), "redis_ping_us": round(ping_us, 1),
              "python_cumulative": _stats_table(profile, args.top)}
    print(f"POST /v1/tickets through the app alone: {per_request_us:.1f} us per request "
          f"(a PING round trip: {ping_us:.1f} us)")
    for name, tottime, cumtime in result["python_cumulative"]:
        print(f"{cumtime / (count / 1e6):8.1f} us cumulative {tottime / (count / 1e6):8.1f} us own  {name}")
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create")
    c.add_argument("--seconds", type=float, default=6.0)
    t = sub.add_parser("tick")
    t.add_argument("--tickets", type=int, default=100_000)
    r = sub.add_parser("request")
    r.add_argument("--requests", type=int, default=3000)
    for p in (c, t, r):
        p.add_argument("--top", type=int, default=25)
        p.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    result = {"create": profile_create, "tick": profile_tick, "request": profile_request}[args.command](args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
