"""Several real replicas on one real Redis: they share queues, and a replica joins with nothing
but the Redis URL."""
from __future__ import annotations

import signal

import pytest

from tests.process.harness import MMServer
from tests.redis_server import RedisServer
from tests.waiting import wait_until

CONFIG = """
[modes.duel]
accept_timeout_s = 0

[servers]
token = "server-token-0123456789"
static = ["10.0.0.5:7777", "10.0.0.6:7777"]
"""


@pytest.fixture
def shared_redis(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def start_replica(tmp_path, name: str, redis_url: str) -> MMServer:
    config = tmp_path / "mm.toml"
    config.write_text(CONFIG)
    return MMServer(tmp_path / name, redis_url=redis_url, env={"MMSERVER_CONFIG": str(config)}).start()


def test_replicas_share_queues_and_a_third_joins_with_only_the_redis_url(tmp_path, shared_redis):
    first = start_replica(tmp_path, "a", shared_redis.url)
    second = start_replica(tmp_path, "b", shared_redis.url)
    replicas = [first.wait_ready(), second.wait_ready()]
    try:
        alice = first.post("/v1/tickets", {"player_id": "alice", "mode": "duel", "mmr": 1500}).json()
        bob = second.post("/v1/tickets", {"player_id": "bob", "mode": "duel", "mmr": 1510}).json()
        # Created on different replicas, matched together; readable from either.
        assigned = wait_until(lambda: (lambda view: view if view["status"] == "assigned" else None)(
            second.get(f"/v1/tickets/{alice['ticket_id']}", token=alice["token"]).json()),
            timeout=15, what="alice assigned")
        assert sorted(assigned["assignment"]["players"]) == ["alice", "bob"]
        bob_view = first.get(f"/v1/tickets/{bob['ticket_id']}", token=bob["token"]).json()
        shared = {k: v for k, v in assigned["assignment"].items() if k != "join_token"}
        assert {k: v for k, v in bob_view["assignment"].items() if k != "join_token"} == shared
        assert bob_view["assignment"]["join_token"] != assigned["assignment"]["join_token"]  # one per ticket

        third = start_replica(tmp_path, "c", shared_redis.url)
        replicas.append(third.wait_ready())
        status = wait_until(lambda: (lambda s: s if len(s.get("replicas", [])) == 3 else None)(
            third.admin("/admin/status").json()), timeout=15, what="three replicas listed")
        assert {r["state"] for r in status["replicas"]} == {"running"}
        carol = third.post("/v1/tickets", {"player_id": "carol", "mode": "duel", "mmr": 1400}).json()
        dave = first.post("/v1/tickets", {"player_id": "dave", "mode": "duel", "mmr": 1410}).json()
        view = wait_until(lambda: (lambda v: v if v["status"] == "assigned" else None)(
            third.get(f"/v1/tickets/{dave['ticket_id']}", token=dave["token"]).json()),
            timeout=15, what="dave assigned")
        assert sorted(view["assignment"]["players"]) == ["carol", "dave"]
        # The two matches hold the two static servers, never the same one twice.
        assert view["assignment"]["server"] != assigned["assignment"]["server"]
        assert carol["ticket_id"] != dave["ticket_id"]
    finally:
        for replica in replicas:
            replica.signal(signal.SIGTERM)
        statuses = [replica.wait(30) for replica in replicas]
    assert statuses == [0] * len(replicas)
    # Each replica removed its own record on the way out.
    assert shared_redis.client().zcard("mm:replicas") == 0
