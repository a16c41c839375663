"""The view cache across real replicas: a change made on one replica reaches the polls and
long-polls of another (which answer from their cache until the change's message arrives), and
a long-poll woken by that message answers the new state, never its cached old one."""
from __future__ import annotations

import threading

import pytest

from tests.process.harness import MMServer, request
from tests.redis_server import RedisServer
from tests.waiting import wait_until

CONFIG = """
[modes.duel]
accept_timeout_s = 30
"""


@pytest.fixture
def replicas(tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    config = tmp_path / "mm.toml"
    config.write_text(CONFIG)
    started = []
    try:
        for name in ("a", "b"):
            started.append(MMServer(tmp_path / name, redis_url=redis.url,
                                    env={"MMSERVER_CONFIG": str(config)}).start())
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        for replica in started:
            replica.kill()
        redis.stop()


def test_a_long_poll_on_one_replica_answers_a_change_made_on_another(replicas):
    first, second = replicas
    ticket = first.post("/v1/tickets", {"player_id": "alice", "mode": "duel", "mmr": 1500}).json()
    path, token = f"/v1/tickets/{ticket['ticket_id']}", ticket["token"]
    # Read on the second replica until its cache holds the queued view (reads agree).
    views = [second.get(path, token=token).json() for _ in range(3)]
    assert {v["status"] for v in views} == {"queued"}
    assert second.get(path, token="wrong-token").status == 403  # the token, checked from the cache
    cache = second.admin("/admin/status").json()["view_cache"]
    assert cache["live"] and cache["hits"] >= 1 and cache["entries"] >= 1, cache
    metrics = request(second.admin_url + "/metrics").body.decode()
    assert 'mmserver_view_cache_reads_total{result="hit"}' in metrics
    answered: list = []
    poll = threading.Thread(target=lambda: answered.append(
        request(f"{second.url}{path}?wait=20&version={views[-1]['version']}", token=token, timeout=30)))
    poll.start()
    try:
        assert wait_until(lambda: second.admin("/admin/status").json()["workers"]["http"]["long_polls"] == 1)
        assert request(first.url + path, "DELETE", token=token).json()["status"] == "cancelled"
        poll.join(30)
        assert answered and answered[0].json()["status"] == "cancelled"
    finally:
        poll.join(30)
    # And the plain polls that follow, from either replica.
    assert [r.get(path, token=token).json()["status"] for r in (first, second, second)] == ["cancelled"] * 3
