"""Invariant 6: nothing a client sends makes Redis state or tick time grow without bound.

Thousands of creates, cancels, reads and heartbeats with random values in every free-form
field (player ids, parties, MMRs, regions, idempotency keys, server ids, addresses, server
regions) go through the real public app on the real redis-server; once the configured
lifetimes pass (ticket TTL, retention, server retention), Redis's key count, its memory and
the tick's duration are back at their baseline. Figures are printed (`pytest -s`).
"""
from __future__ import annotations

import random
import string
import time

import falcon.testing

from mmserver.config import Config, ModeConfig, ServersConfig
from mmserver.http.app import create_public_app
from mmserver.http.waiters import Waiters
from mmserver.readiness import Readiness
from mmserver.shutdown import Shutdown
from mmserver.store import Store
from mmserver.ticker import Ticker

SERVER_TOKEN = "server-token-0123456789"
REGIONS = ("eu", "us")
LIFETIME_S = 1.0  # ticket TTL, terminal retention, server heartbeat and retention: all short


def _text(rng: random.Random, alphabet: str, low: int, high: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def _hostile_ticket(rng: random.Random) -> dict:
    ids = string.ascii_letters + string.digits + "_.:-"
    body = {"player_id": _text(rng, ids, 1, 64), "mode": rng.choice(["duel", "squad", "nope"]),
            "mmr": rng.choice([rng.uniform(0, 100000), rng.randint(-5, 200000)])}
    if rng.random() < 0.5:
        body["region"] = rng.choice([*REGIONS, _text(rng, string.ascii_lowercase, 1, 32)])
    if rng.random() < 0.5:
        body["party"] = [_text(rng, ids, 1, 64) for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.5:
        body["idempotency_key"] = _text(rng, string.printable[:94], 1, 128)
    return body


def _heartbeat(rng: random.Random) -> tuple[str, dict]:
    server = _text(rng, string.ascii_letters + string.digits, 1, 64)
    body = {"address": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}:"
                       f"{rng.randint(1, 65535)}"}
    if rng.random() < 0.5:
        body["region"] = rng.choice([*REGIONS, _text(rng, string.ascii_lowercase, 1, 32)])
    return server, body


def _state(redis_client) -> tuple[int, int]:
    return redis_client.dbsize(), int(redis_client.info("memory")["used_memory"])


def _commands(redis_client) -> int:
    """Commands Redis has run, those inside scripts included (commandstats counts both)."""
    return sum(stats["calls"] for stats in redis_client.info("commandstats").values())


def _tick(ticker: Ticker, redis_client, rounds: int = 5) -> tuple[float, int]:
    """A tick's median duration (ms) and the Redis commands it runs: the work it does, a figure
    a loaded machine does not move (its duration, on a busy 2-core host, it does)."""
    durations, commands = [], []
    for _ in range(rounds):
        before = _commands(redis_client)
        started = time.perf_counter()
        ticker.tick()
        durations.append((time.perf_counter() - started) * 1000)
        commands.append(_commands(redis_client) - before - 1)  # the INFO itself counts once
    return sorted(durations)[rounds // 2], sorted(commands)[rounds // 2]


def test_hostile_traffic_leaves_keys_memory_and_tick_time_at_their_baseline(redis_client):
    modes = {"duel": ModeConfig("duel", accept_timeout_s=LIFETIME_S, ticket_ttl_s=LIFETIME_S),
             "squad": ModeConfig("squad", team_size=3, accept_timeout_s=LIFETIME_S, ticket_ttl_s=LIFETIME_S)}
    servers = ServersConfig(token=SERVER_TOKEN, heartbeat_ttl_s=LIFETIME_S, retention_s=LIFETIME_S,
                            allocation_timeout_s=LIFETIME_S)
    config = Config(modes=modes, servers=servers, regions=REGIONS)
    store = Store(redis_client, modes, servers, retention_s=1, regions=REGIONS)
    readiness = Readiness()
    readiness.mark_started()
    readiness.set_redis_connected(True)
    client = falcon.testing.TestClient(create_public_app(store=store, waiters=Waiters(2), readiness=readiness,
                                                         config=config))
    ticker = Ticker(store, modes, shutdown=Shutdown())
    # Warm-up: the fixed keys every deployment has (counters, each configured queue's
    # bookkeeping) exist before the baseline is taken.
    for mode in modes:
        for region in (None, *REGIONS):
            view, token = store.create_ticket(player_id=f"warm-{mode}-{region}", mode=mode, mmr=1,
                                              region=region, party=[])
            store.cancel_ticket(view["ticket_id"], token)
    for player in ("warm-a", "warm-b"):  # a match that times out: the session counters exist
        store.create_ticket(player_id=player, mode="duel", mmr=1, region=None, party=[])
    ticker.tick()
    for _ in range(3):
        time.sleep(LIFETIME_S + 0.2)
        ticker.tick()
    keys_before, memory_before = _state(redis_client)
    names_before = set(redis_client.keys("*"))
    tick_before, work_before = _tick(ticker, redis_client)

    rng = random.Random(4242)
    statuses: dict[int, int] = {}
    server_auth = {"Authorization": f"Bearer {SERVER_TOKEN}"}
    for i in range(2000):
        created = client.simulate_post("/v1/tickets", json=_hostile_ticket(rng))
        statuses[created.status_code] = statuses.get(created.status_code, 0) + 1
        if created.status_code == 201:
            auth = {"Authorization": f"Bearer {created.json['token']}"}
            path = f"/v1/tickets/{created.json['ticket_id']}"
            client.simulate_get(path, headers=auth)
            if rng.random() < 0.7:
                client.simulate_delete(path, headers=auth)
        server, body = _heartbeat(rng)
        beat = client.simulate_put(f"/v1/servers/{server}", json=body, headers=server_auth)
        statuses[beat.status_code] = statuses.get(beat.status_code, 0) + 1
        if i % 200 == 0:
            ticker.tick()
    assert all(status < 500 for status in statuses), statuses
    keys_peak, memory_peak = _state(redis_client)
    tick_peak, work_peak = _tick(ticker, redis_client, 1)

    # Past every configured lifetime, the ticks clear what the flood left.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(LIFETIME_S)
        ticker.tick()
        if redis_client.dbsize() <= keys_before:
            break
    keys_after, memory_after = _state(redis_client)
    tick_after, work_after = _tick(ticker, redis_client)
    print(f"\nanswers {dict(sorted(statuses.items()))}"
          f"\nkeys: baseline {keys_before}, after the flood {keys_peak}, settled {keys_after}"
          f"\nRedis used_memory: baseline {memory_before}, after the flood {memory_peak}, settled {memory_after}"
          f"\ntick: baseline {tick_before:.1f} ms, after the flood {tick_peak:.1f} ms, settled {tick_after:.1f} ms"
          f"\ntick's Redis commands: baseline {work_before}, after the flood {work_peak}, settled {work_after}")
    assert keys_peak > keys_before + 100  # the flood did write state...
    assert keys_after <= keys_before, sorted(set(redis_client.keys("*")) - names_before)[:20]  # ...and none of it stayed
    # Memory: the same key count; allocator slack and the outcome counters aside, no growth.
    assert memory_after < memory_before + 256 * 1024, (memory_before, memory_after)
    # The tick: back to its baseline's work, and no slower beyond what a busy host's scheduling
    # explains (a median of 70 ms against 1.2 ms was seen at a load average of 5).
    assert work_after <= work_before, (work_before, work_after)
    assert tick_after < max(3 * tick_before, tick_before + 250), (tick_before, tick_after)
