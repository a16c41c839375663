"""SIGKILL of a replica in the middle of a tick, under load: every ticket the API answered 201
for is afterwards where it was or where the interrupted step was taking it (SPEC.md invariant 3),
checked directly in Redis and through the API."""
from __future__ import annotations

import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from mmserver.store import keys
from tests.chaos.checker import Checker
from tests.chaos.ledger import Ledger
from tests.process.harness import MMServer
from tests.redis_server import RedisServer
from tests.waiting import wait_until

STATIC = [f"10.0.{n // 250}.{n % 250}:7777" for n in range(400)]
CONFIG = f"""
[modes.duel]
accept_timeout_s = 0

[modes.squad]
team_size = 2
teams = 2
accept_timeout_s = 0
mmr_window = 300

[servers]
token = "server-token-0123456789"
static = {STATIC!r}
allocation_timeout_s = 5
""".replace("'", '"')
TICKETS = 3000


def create_all(server: MMServer, ledger: Ledger, first: int, count: int) -> None:
    rng = random.Random(first)

    def create(n: int) -> None:
        if n % 3 == 0:  # a party of two in 2v2
            body = {"player_id": f"s{n}", "mode": "squad", "mmr": rng.randint(1000, 2000), "party": [f"s{n}b"]}
            players = (f"s{n}", f"s{n}b")
        else:
            body = {"player_id": f"d{n}", "mode": ("duel", "squad")[n % 2], "mmr": rng.randint(1000, 2000)}
            players = (f"d{n}",)
        answer = server.post("/v1/tickets", body)
        assert answer.status == 201, answer.body
        ledger.acknowledge(answer.json(), players, "crash-test")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(first, first + count)))


def wait_until_ticking(replica: MMServer, timeout: float = 20.0) -> None:
    """Until the replica's matchmaker job is running a tick that has work to do."""
    def running() -> bool:
        return replica.admin("/admin/status").json()["workers"]["scheduler"]["jobs"]["matchmaker"]["running"]

    assert wait_until(running, timeout, interval=0.002), "the matchmaker never ran"


def test_sigkill_mid_tick_under_load_strands_nothing(tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    config = tmp_path / "mm.toml"
    config.write_text(CONFIG)
    env = {"MMSERVER_CONFIG": str(config), "MMSERVER_TICK_INTERVAL_MS": "50"}
    ledger = Ledger()
    # A first wave through the victim alone, then the victim is killed mid-tick, three times,
    # while a second wave arrives through another replica.
    victim = MMServer(tmp_path / "victim", redis_url=redis.url, env=env).start().wait_ready()
    other = None
    try:
        create_all(victim, ledger, 0, TICKETS // 2)
        other = MMServer(tmp_path / "other", redis_url=redis.url, env=env).start().wait_ready()
        second_wave = threading.Thread(target=create_all, args=(other, ledger, TICKETS // 2, TICKETS // 2))
        second_wave.start()
        kills = 0
        for _ in range(3):
            wait_until_ticking(victim)
            victim.kill()
            kills += 1
            victim = MMServer(tmp_path / "victim", redis_url=redis.url, env=env).start().wait_ready()
        second_wave.join(60)
        assert len(ledger) == TICKETS
        time.sleep(1.0)  # let the survivors tick over what the victim left

        checker = Checker(redis.client(decode_responses=True), ledger, slack_s=10, retention_s=3600,
                          heartbeat_ttl_s=15, silenced=[])
        snap = checker.check_redis()
        read = checker.check_api(other.url)
        assert checker.violations == [], [v.as_dict() for v in checker.violations[:10]]
        assert read == TICKETS
        stored = [redis.client(decode_responses=True).get(keys.ticket(tid)) for tid in ledger.records]
        statuses = [keys.unpack_ticket(record)["s"] if record else None for record in stored]
        # 400 servers host at most 400 matches; the rest wait queued or in allocation.
        assert statuses.count("assigned") >= 500, "the survivors went on matching"
        assert kills == 3 and snap is not None
    finally:
        for replica in (victim, other):
            if replica is not None and replica.process.poll() is None:
                replica.signal(signal.SIGTERM)
                replica.wait(30)
        redis.stop()
