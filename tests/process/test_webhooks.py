"""Webhooks end to end: real replicas (tests/process/harness.py) on a real redis-server, a real
local HTTP receiver that verifies every signature (tests/webhook_receiver.py), real HMAC.

What "every event" means here: the ids of the event log itself (`mm:ev`), read from Redis after
the traffic, so an event some replica committed and nobody delivered cannot go unnoticed."""
from __future__ import annotations

import signal
import threading
import time

import pytest

from mmserver.store import keys
from tests.process.harness import MMServer
from tests.redis_server import RedisServer
from tests.webhook_receiver import WebhookReceiver

SECRET = "whsec-test-4f9c2a7d1e8b6053"
SERVER_TOKEN = "server-token-0123456789"


def config_text(url: str, secret_file, **options) -> str:
    lines = ["[modes.duel]", "accept_timeout_s = 0", "",
             "[servers]", f'token = "{SERVER_TOKEN}"',
             "static = [" + ", ".join(f'"10.0.{i // 250}.{i % 250 + 1}:7777"' for i in range(400)) + "]", "",
             "[webhooks]", f'url = "{url}"', f'secret_file = "{secret_file}"']
    lines += [f"{key} = {value}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "webhook.secret"
    path.write_text(SECRET + "\n")
    return path


def start_replicas(tmp_path, redis_url: str, config: str, count: int, names: str = "abc") -> list[MMServer]:
    path = tmp_path / "mm.toml"
    path.write_text(config)
    replicas = [MMServer(tmp_path / names[i], redis_url=redis_url, env={"MMSERVER_CONFIG": str(path)}).start()
                for i in range(count)]
    return [replica.wait_ready() for replica in replicas]


def log_ids(client) -> set[str]:
    return {entry_id for entry_id, _ in client.xrange(keys.EVENT_LOG)}


def create_players(replicas: list[MMServer], prefix: str, count: int) -> int:
    created = 0
    for i in range(count):
        answer = replicas[i % len(replicas)].post(
            "/v1/tickets", {"player_id": f"{prefix}{i}", "mode": "duel", "mmr": 1000 + i})
        assert answer.status == 201, answer.body
        created += 1
    return created


def wait_quiet(client, timeout: float = 20.0) -> None:
    """Until the log stops growing (every created ticket matched and assigned)."""
    deadline, last, since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        length = client.xlen(keys.EVENT_LOG)
        if length != last:
            last, since = length, time.monotonic()
        elif time.monotonic() - since > 1.0:
            return
        time.sleep(0.1)


def stop_all(replicas: list[MMServer]) -> None:
    for replica in replicas:
        if replica.process and replica.process.poll() is None:
            replica.signal(signal.SIGTERM)
    for replica in replicas:
        if replica.process:
            try:
                replica.wait(20)
            finally:
                replica.kill()


def test_every_event_arrives_signed_as_the_log_holds_it(tmp_path, redis_server, secret_file):
    receiver = WebhookReceiver(SECRET).start()
    replicas = start_replicas(tmp_path, redis_server.url, config_text(receiver.url, secret_file), 1)
    client = redis_server.client(decode_responses=True)
    try:
        create_players(replicas, "p", 20)
        wait_quiet(client)
        ids = log_ids(client)
        assert len(ids) >= 20 * 3  # queued, matched, assigned at least, plus match events
        assert receiver.wait_for(ids, 15) == set()
        assert receiver.bad_signatures() == []
        by_id = {r.event_id: r.event for r in receiver.received}
        some = sorted(ids)[0]
        fields = client.xrange(keys.EVENT_LOG, some, some)[0][1]
        assert by_id[some]["id"] == some and by_id[some]["type"] == fields["y"]
        assert {r.event["type"] for r in receiver.received} >= {"ticket.queued", "ticket.assigned", "match.assigned"}
        # Delivered events leave nothing pending; the metrics say so.
        status = replicas[0].admin("/admin/status").json()
        assert status["webhooks"]["pending"] == 0 and status["webhooks"]["dead_letters"] == 0
        assert status["workers"]["webhooks"]["alive"] is True
        metrics = replicas[0].admin("/metrics").body.decode()
        delivered = next(line for line in metrics.splitlines()
                         if line.startswith('mmserver_webhook_deliveries_total{outcome="delivered"}'))
        assert float(delivered.split()[-1]) >= len(ids)
        assert "mmserver_webhook_delivery_latency_seconds_bucket" in metrics
        assert "mmserver_webhook_lag_seconds 0.0" in metrics
    finally:
        stop_all(replicas)
        receiver.stop()
    assert [r.process.returncode for r in replicas] == [0]


def test_a_receiver_failing_at_first_gets_every_event_after_retries(tmp_path, redis_server, secret_file):
    # 500 to the first two attempts of every event, then 200.
    receiver = WebhookReceiver(SECRET, answer=lambda event_id, attempt: 500 if attempt <= 2 else 200).start()
    config = config_text(receiver.url, secret_file, max_attempts=5, timeout_s=0.2,
                         backoff_initial_s=0.1, backoff_max_s=0.5)
    replicas = start_replicas(tmp_path, redis_server.url, config, 1)
    client = redis_server.client(decode_responses=True)
    try:
        create_players(replicas, "r", 6)
        wait_quiet(client)
        ids = log_ids(client)
        assert receiver.wait_for(ids, 30) == set()
        assert all(receiver.attempts[event_id] >= 3 for event_id in ids)
        assert receiver.bad_signatures() == []
        metrics = replicas[0].admin("/metrics").body.decode()
        failed = next(line for line in metrics.splitlines()
                      if line.startswith('mmserver_webhook_deliveries_total{outcome="failed"}'))
        assert float(failed.split()[-1]) >= 2 * len(ids)
    finally:
        stop_all(replicas)
        receiver.stop()
