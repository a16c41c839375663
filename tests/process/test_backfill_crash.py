"""SIGKILL of a replica while backfills are being filled: real mmserver processes on a real
redis-server. Afterwards every ticket is queued, assigned or finished (none stranded between),
each backfilled place holds exactly one ticket, and the invariants hold
(tests/store/invariants.py)."""
from __future__ import annotations

import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tests.process.harness import MMServer
from tests.process.test_crash import wait_until_ticking
from tests.redis_server import RedisServer
from tests.store.invariants import check_invariants
from tests.waiting import wait_until

TOKEN = "server-token-0123456789"
STATIC = [f"10.1.{n // 250}.{n % 250}:7777" for n in range(300)]
CONFIG = f"""
[modes.squad]
team_size = 2
teams = 2
accept_timeout_s = 0
mmr_window = 300
mmr_window_max = 1000

[servers]
token = "{TOKEN}"
static = {STATIC!r}
allocation_timeout_s = 5
""".replace("'", '"')


def create(server: MMServer, players: list[str], seed: int, workers: int = 8) -> list[str]:
    rng = random.Random(seed)

    def one(player: str) -> str:
        answer = server.post("/v1/tickets", {"player_id": player, "mode": "squad", "mmr": rng.randint(1400, 1600)})
        assert answer.status == 201, answer.body
        return answer.json()["ticket_id"]

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, players))


def test_sigkill_while_filling_backfills_strands_nothing(tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    client = redis.client(decode_responses=True)
    config = tmp_path / "mm.toml"
    config.write_text(CONFIG)
    env = {"MMSERVER_CONFIG": str(config), "MMSERVER_TICK_INTERVAL_MS": "50"}
    victim = MMServer(tmp_path / "victim", redis_url=redis.url, env=env).start().wait_ready()
    other = MMServer(tmp_path / "other", redis_url=redis.url, env=env).start().wait_ready()
    try:
        first = create(victim, [f"a{n}" for n in range(200)], 1)
        wait_until(lambda: int(client.hget("mm:n", "a:squad") or 0) == 200, timeout=30,
                   what="200 players assigned")
        # Every match loses one player and asks for one.
        backfills = 0
        for match_id in client.smembers("mm:asg"):
            roster = other.get(f"/v1/matches/{match_id}", token=TOKEN).json()
            gone = roster["teams"][1]["players"][0]["player_id"]
            answer = _delete(other, f"/v1/matches/{match_id}/players/{gone}")
            assert answer.status == 200, answer.body
            answer = other.post(f"/v1/matches/{match_id}/backfill", {"slots": [{"team": 1, "count": 1}]}, token=TOKEN)
            assert answer.status == 201, answer.body
            backfills += 1
        assert backfills == 50
        # New players trickle in through the other replica (one at a time, so the backfills
        # fill over many ticks) while the victim dies mid-tick.
        second: list[str] = []
        wave = threading.Thread(target=lambda: second.extend(create(other, [f"b{n}" for n in range(150)], 2,
                                                                    workers=1)))
        wave.start()
        for _ in range(3):
            wait_until_ticking(victim)
            victim.kill()
            victim = MMServer(tmp_path / "victim", redis_url=redis.url, env=env).start().wait_ready()
        wave.join(60)
        assert len(second) == 150
        wait_until(lambda: client.zcard("mm:bfo:squad") == 0, timeout=30, what="every backfill filled")
        time.sleep(0.5)  # the survivors tick over whatever the kills interrupted

        statuses = check_invariants(client, {"squad": 2})
        assert set(statuses.values()) <= {"queued", "assigned", "finished"}, set(statuses.values())
        assert sum(1 for tid in first if statuses[tid] == "finished") == 50  # those who left
        # Each backfill filled exactly once: 50 newcomers assigned through one.
        through_backfill = [e for e in _events(client) if e[0] == "ticket.assigned" and "backfill_id" in e[1]]
        assert len(through_backfill) == 50
        assert len({e[2] for e in through_backfill}) == 50  # 50 distinct tickets
        assert sum(1 for e in _events(client) if e[0] == "backfill.filled") == 50
    finally:
        for replica in (victim, other):
            if replica.process is not None and replica.process.poll() is None:
                replica.signal(signal.SIGTERM)
                replica.wait(30)
        redis.stop()


def _delete(server: MMServer, path: str):
    from tests.process.harness import request
    return request(server.url + path, "DELETE", token=TOKEN)


def _events(client) -> list[tuple[str, str, str]]:
    return [(fields["y"], fields["d"], fields["t"]) for _id, fields in client.xrange("mm:ev", "-", "+")]
