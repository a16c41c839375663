"""A real mmserver on a real Redis Sentinel deployment (master, replica, three sentinels) whose
master is killed: the sentinels promote the replica and mmserver follows it.

Replication is asynchronous: a write acknowledged by the master an instant before it dies may
never reach the replica. The test makes the outcome deterministic by waiting for the replica to
acknowledge everything written so far (WAIT) before the kill; docs/REDIS.md covers what that
means in production.
"""
from __future__ import annotations

import threading
import time

import pytest

from tests.process.harness import MMServer, request, ticket_in_redis
from tests.redis_sentinel import SentinelDeployment
from tests.waiting import wait_until

CONFIG = """
[modes.duel]
accept_timeout_s = 0
mmr_window = 50
mmr_window_growth_per_s = 0
mmr_window_max = 50

[servers]
token = "server-token-0123456789"
static = ["10.0.0.5:7777"]
"""


@pytest.fixture
def deployment(tmp_path):
    deployment = SentinelDeployment(tmp_path / "redis", down_after_ms=1000, failover_timeout_ms=2000)
    try:
        deployment.start()
        deployment.wait_healthy()
        yield deployment
    finally:
        deployment.stop()


def test_mmserver_follows_a_sentinel_failover(tmp_path, deployment):
    config = tmp_path / "mm.toml"
    config.write_text(CONFIG)
    server = MMServer(tmp_path / "mm", redis_url=deployment.url, env={
        "MMSERVER_CONFIG": str(config),
        # Room for the whole failover window (down-after + election + promotion), retried
        # often so readiness comes back soon after the promotion.
        "MMSERVER_REDIS_RECONNECT_ATTEMPTS": "200",
        "MMSERVER_REDIS_BACKOFF_INITIAL_MS": "100",
        "MMSERVER_REDIS_BACKOFF_MAX_MS": "250",
    }).start()
    try:
        server.wait_ready()
        # Two tickets too far apart in MMR to ever match each other.
        alice = server.post("/v1/tickets", {"player_id": "alice", "mode": "duel", "mmr": 1500})
        bob = server.post("/v1/tickets", {"player_id": "bob", "mode": "duel", "mmr": 3000})
        assert alice.status == 201 and bob.status == 201, (alice.body, bob.body)
        alice, bob = alice.json(), bob.json()
        deployment.replicate_everything()

        # Alice's client long-polls across the failover.
        poll: dict = {}

        def long_poll() -> None:
            try:
                poll["answer"] = request(f"{server.url}/v1/tickets/{alice['ticket_id']}?wait=25",
                                         token=alice["token"], timeout=40)
            except OSError as error:  # reported by the assertion on poll below
                poll["error"] = error

        poller = threading.Thread(target=long_poll, name="long-poll")
        poller.start()
        time.sleep(0.3)  # the long-poll is registered before the kill

        killed_at = time.monotonic()
        deployment.kill_master()
        # The subscriber's connection drops at once: readiness says so, with a retry hint.
        not_ready = wait_until(
            lambda: (lambda a: a if a.status == 503 else None)(server.get("/readyz", timeout=2)),
            5, what="readiness 503 after the kill")
        assert "Retry-After" in not_ready.headers
        # Until the promotion there is no master: a write is refused with a retry hint, not hung.
        refused = server.post("/v1/tickets", {"player_id": "dave", "mode": "duel", "mmr": 5000})
        assert refused.status == 503 and "Retry-After" in refused.headers, (refused.status, refused.body)
        new_master = deployment.wait_failover()
        wait_until(lambda: server.get("/readyz", timeout=2).status == 200, 30,
                   what="readiness 200 after the failover")
        recovered_s = time.monotonic() - killed_at
        print(f"\nsentinel failover: readiness back to 200 {recovered_s:.2f} s after SIGKILL of the master")
        assert new_master == deployment.replica.port
        assert server.process.poll() is None, server.output()

        # What was written before the kill (and replicated) is still there.
        for ticket in (alice, bob):
            view = server.get(f"/v1/tickets/{ticket['ticket_id']}", token=ticket["token"])
            assert view.status == 200, view.body
            assert view.json()["status"] == "queued"

        # New writes go to the new master, and its events reach the long-poll started before
        # the failover: the subscriber re-subscribed on the new master.
        carol = server.post("/v1/tickets", {"player_id": "carol", "mode": "duel", "mmr": 1510})
        assert carol.status == 201, carol.body
        assert ticket_in_redis(deployment.replica.client(), carol.json()["ticket_id"])
        poller.join(30)
        assert not poller.is_alive()
        assert "answer" in poll, poll
        answer = poll["answer"]
        assert answer.status == 200, answer.body
        # Woken by the first change: the claim ('matched') or, when the same tick's allocation
        # ran before the answer was read, the assignment. Either proves the wake-up.
        assert answer.json()["status"] in ("matched", "assigned"), answer.json()
        assert time.monotonic() - killed_at < 25, "the long-poll ran to its timeout instead of being woken"

        status = server.admin("/admin/status").json()
        subscriber = status["workers"]["subscriber"]
        assert subscriber["connected"] and subscriber["reconnects_total"] >= 1, subscriber
    finally:
        server.kill()
