"""The claim step alone: claim.lua's Redis time and the Python time around it, per batch.

`prepare` fills a real redis-server through the store's create script (1v1 or the 5v5 mode
with roles and rules of bench_rules.py), runs the matcher once over the full queue and saves
the database (DUMP of every key) and the proposals to a directory. `run` restores that
database into a fresh redis-server (append-only file on, as in bench_tick.py), reads the
queue once (as the tick does before it claims) and claims every proposal in batches of 500,
one after the other, in this thread, as the ticker's claim threads do:

- Redis: INFO commandstats of EVALSHA (and the commands the scripts call) over the claims;
- Python: the thread's CPU time in the ticker's `_choices` and `Store.claim` (arguments,
  their encoding, the reply), and the wall time of the claims.

Rounds restore the database each time; medians are printed. Since `prepare` saves the queue
and the proposals, `run` can be pointed at two checkouts (PYTHONPATH) on the same input.

`run --check FILE` also makes the input harder (some tickets claimed by someone else first,
a ticket proposed twice in one batch and twice in one proposal, members missing from the
last read so they go bare, an unknown id), fixes the session ids (a counter instead of random
ids) and writes what the claims left behind as JSON: every key's content (times masked), the
event log's entries (fields, in order), the PUBLISH messages and the claim replies. Two
checkouts' files must be equal:

    PYTHONPATH=. .venv/bin/python bench/bench_claim.py prepare --scenario 1v1 --dir /tmp/c1
    PYTHONPATH=. .venv/bin/python bench/bench_claim.py run --dir /tmp/c1 --rounds 3
    PYTHONPATH=. .venv/bin/python bench/bench_claim.py run --dir /tmp/c1 --check /tmp/new.json
    PYTHONPATH=. .venv/bin/python bench/bench_claim.py run --dir /tmp/c1 --without-events   # what the events cost
"""
from __future__ import annotations

import argparse
import gc
import json
import pickle
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RedisServer, fill_queue  # noqa: E402

import bench_rules  # noqa: E402
from mmserver import ticker as ticker_module  # noqa: E402
from mmserver.config import ServersConfig  # noqa: E402
from mmserver.matchmaking import MatchRules, match_queue  # noqa: E402
from mmserver.store import Store, keys  # noqa: E402
from mmserver.store import sessions as sessions_module  # noqa: E402

BATCH = 500


def _mode(scenario: str):
    return bench_rules.SCENARIOS[scenario]


def prepare(args) -> None:
    mode, profile = _mode(args.scenario)
    modes = {mode.name: mode}
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(Path(directory)).start()
        try:
            client = server.client(decode_responses=True, socket_timeout=None)
            fill_queue(server.url, modes, mode.name, args.count, prefix=f"{args.scenario}-",
                       profile=profile, regions=bench_rules.REGIONS)
            store = Store(client, modes, ServersConfig(), regions=bench_rules.REGIONS)
            tickets = store.read_queue(mode.name, None)
            rules = MatchRules.from_mode(mode, bench_rules.REGIONS)
            matching = match_queue(tickets, rules, store.now() + args.waited)
            raw = server.client(decode_responses=False, socket_timeout=None)
            dump = [(key, raw.pttl(key), raw.dump(key)) for key in raw.scan_iter(count=1000)]
            proposals = [(p.teams, p.region, dict(p.roles), dict(p.attributes)) for p in matching.proposals]
            with open(out / "data.pickle", "wb") as f:
                pickle.dump({"scenario": args.scenario, "dump": dump, "proposals": proposals}, f)
            print(f"{len(tickets)} tickets, {len(proposals)} proposals, {len(dump)} keys -> {out}")
        finally:
            server.stop()


def _restore(server: RedisServer, dump) -> None:
    raw = server.client(decode_responses=False, socket_timeout=None)
    raw.flushall()
    pipe = raw.pipeline(transaction=False)
    for key, pttl, payload in dump:
        pipe.restore(key, pttl if pttl > 0 else 0, payload)
    pipe.execute()
    raw.close()


def _harden(store, client, mode_name, proposals, batch_size):
    """The check's harder input: returns the proposals to claim in batches."""
    from mmserver.matchmaking.model import Proposal

    queue = keys.queue(mode_name, None)
    known = store._sessions._members[queue]
    out = list(proposals)
    # Someone else claimed one ticket of every 37th proposal first.
    stolen = [Proposal(((p.teams[0][0],),), 0.0) for p in out[5::37]]
    store.claim(mode_name, None, [p.teams for p in stolen], 10.0)
    # Members missing from the last read: their ids go bare (every 41st proposal's last ticket).
    for p in out[7::41]:
        known.pop(p.teams[-1][-1], None)
    # A ticket proposed again later in its batch; a proposal naming one ticket twice; an
    # unknown id.
    for start in range(0, len(out), batch_size * 3):
        batch = out[start:start + batch_size]
        if len(batch) < 4:
            continue
        a, b = batch[1], batch[2]
        out.insert(start + 3, Proposal((a.teams[0], b.teams[-1]), 0.0, b.region, b.roles, b.attributes))
        c = batch[3]
        out.insert(start + 5, Proposal((c.teams[0] + c.teams[0],), 0.0))
        out.insert(start + 6, Proposal((("nonexistent-id",), c.teams[-1]), 0.0))
    # Batches the joined layout cannot carry: an empty team, an id holding ',', one holding
    # a newline.
    for at, odd in ((batch_size, ()), (2 * batch_size, ("a,b",)), (4 * batch_size, ("a\nb",))):
        if at + 10 < len(out):
            out.insert(at + 10, Proposal((odd, out[at + 9].teams[-1]), 0.0))
    return out


def _state(client) -> dict:
    now = int(client.time()[0]) * 1000
    stamp = re.compile(r"(?<![0-9])1[0-9]{12}(?![0-9])")

    def mask(text):
        return stamp.sub(lambda m: "T" if abs(int(m.group(0)) - now) < 86_400_000 else m.group(0), text)

    state = {}
    for key in sorted(client.scan_iter(count=1000)):
        kind = client.type(key)
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = dict(sorted(client.hgetall(key).items()))
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "stream":
            value = [fields for _id, fields in client.xrange(key)]
        else:
            value = kind
        state[mask(key)] = mask(json.dumps(value))
    return state


# The line of claim.lua that appends one event per claimed ticket (--without-events drops it).
_EVENT_LINE = "      emit_untrimmed('ticket.matched', id, sid, mode, '{}')\n"


def _variant(args) -> str | None:
    """The text of the claim.lua variant to run, if any: --script's file, or claim.lua without
    its per-ticket events (what the events cost: everything else the script does is the same)."""
    if args.script:
        return Path(args.script).read_text()
    if args.without_events:
        from mmserver.store.scripts import _source
        text = _source("claim")
        if _EVENT_LINE not in text:
            raise SystemExit("claim.lua's event line changed: update bench_claim._EVENT_LINE")
        return text.replace(_EVENT_LINE, "")
    return None


def run(args) -> None:
    with open(Path(args.dir) / "data.pickle", "rb") as f:
        data = pickle.load(f)
    from mmserver.matchmaking.model import Proposal

    mode, _profile = _mode(data["scenario"])
    modes = {mode.name: mode}
    proposals = [Proposal(teams, 0.0, region, roles, attributes) for teams, region, roles, attributes in data["proposals"]]
    if args.check:
        counter = iter(range(10**9))
        sessions_module.new_ids = lambda n: [f"S{next(counter):015d}" for _ in range(n)]
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(Path(directory), appendonly=not args.no_aof).start()
        try:
            for _round in range(1 if args.check else args.rounds):
                _restore(server, data["dump"])
                client = server.client(decode_responses=True, socket_timeout=None)
                store = Store(client, modes, ServersConfig(), regions=bench_rules.REGIONS)
                variant = _variant(args)
                if variant is not None:  # a variant of claim.lua, assembled as Scripts does
                    from mmserver.store import scripts as scripts_module
                    constants = keys.lua_constants(scripts_module.DEFAULT_SETTINGS)
                    lib = scripts_module.inline(scripts_module.library(), constants)
                    store._scripts._sources["claim"] = scripts_module.assemble(
                        "", lib, scripts_module.inline(variant, constants))
                store._scripts.load_all()
                tickets = store.read_queue(mode.name, None)
                players = {t.ticket_id: t.players for t in tickets}
                todo = proposals
                messages = []
                if args.check:
                    if not args.as_proposed:
                        todo = _harden(store, client, mode.name, proposals, args.batch)
                    pubsub = client.pubsub()
                    pubsub.subscribe(keys.EVENTS_CHANNEL)
                    pubsub.get_message(timeout=1.0)
                client.config_resetstat()
                before = client.info("cpu")
                cpu = wall = 0.0
                replies = []
                # As in the tick: the cyclic collector is paused while the matcher runs and
                # claims go on (Ticker); a collection here would be charged to the claims.
                gc.collect()
                gc.disable()
                for start in range(0, len(todo), args.batch):
                    batch = todo[start:start + args.batch]
                    c0, w0 = time.thread_time(), time.perf_counter()
                    choices = ticker_module._choices(batch, players) if mode.has_profiles else None
                    results = store.claim(mode.name, None, [p.teams for p in batch], mode.accept_timeout_s, choices)
                    claimed = sum(1 for r in results if r.session_id)
                    cpu += time.thread_time() - c0
                    wall += time.perf_counter() - w0
                    replies.extend([r.session_id, list(r.failed)] for r in results)
                    del claimed
                gc.enable()
                stats = client.info("commandstats")
                after = client.info("cpu")
                row = {"evalsha_s": stats["cmdstat_evalsha"]["usec"] / 1e6,
                       "redis_cpu_s": sum(after[k] - before[k] for k in ("used_cpu_sys", "used_cpu_user")),
                       "calls": stats["cmdstat_evalsha"]["calls"],
                       "python_cpu_s": cpu, "wall_s": wall,
                       "claimed": sum(1 for r in replies if r[0]),
                       "commands": {k[8:]: round(v["usec"] / 1e6, 4) for k, v in stats.items()
                                    if v["usec"] > 1000 and k != "cmdstat_evalsha"}}
                rows.append(row)
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
                if args.check:
                    deadline = time.monotonic() + 2.0
                    while time.monotonic() < deadline:
                        message = pubsub.get_message(timeout=0.2)
                        if message and message["type"] == "message":
                            messages.append(message["data"])
                        elif message is None and messages:
                            break
                    out = {"replies": replies, "published": messages, "state": _state(client)}
                    Path(args.check).write_text(json.dumps(out, sort_keys=True, indent=0))
                    print(f"state of {len(out['state'])} keys, {len(messages)} messages -> {args.check}")
                client.close()
        finally:
            server.stop()
    if len(rows) > 1:
        print("median:", json.dumps({k: round(statistics.median(r[k] for r in rows), 4)
                                     for k in ("evalsha_s", "redis_cpu_s", "python_cpu_s", "wall_s")}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--scenario", choices=sorted(bench_rules.SCENARIOS), default="1v1")
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--waited", type=float, default=30.0,
                   help="seconds added to the matcher's clock (the rules' limits widen with waiting)")
    p.add_argument("--dir", required=True)
    r = sub.add_parser("run")
    r.add_argument("--dir", required=True)
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--batch", type=int, default=BATCH, help="proposals per script (the ticker's batch_size)")
    r.add_argument("--check", help="write the state the claims leave to this JSON file")
    r.add_argument("--as-proposed", action="store_true", help="--check without the harder input")
    r.add_argument("--no-aof", action="store_true", help="run redis-server without its append-only file")
    r.add_argument("--script", help="claim this variant of claim.lua (same arguments) instead")
    r.add_argument("--without-events", action="store_true",
                   help="claim.lua without its one event per claimed ticket: what those events cost")
    args = parser.parse_args(argv)
    (prepare if args.command == "prepare" else run)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
