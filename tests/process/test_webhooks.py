"""Webhooks end to end: real replicas (tests/process/harness.py) on a real redis-server, a real
local HTTP receiver that verifies every signature (tests/webhook_receiver.py), real HMAC.

What "every event" means here: the ids of the event log itself (`mm:ev`), read from Redis after
the traffic, so an event some replica committed and nobody delivered cannot go unnoticed."""
from __future__ import annotations

import signal
import socket
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


def test_every_committed_event_arrives_while_a_replica_is_sigkilled(tmp_path, redis_server, secret_file):
    # A receiver slow enough (20 ms an event) that every replica holds a batch read and not yet
    # acknowledged at any instant: the killed one takes some with it.
    def slowly(event_id: str, attempt: int) -> int:
        time.sleep(0.02)
        return 200

    receiver = WebhookReceiver(SECRET, answer=slowly).start()
    config = config_text(receiver.url, secret_file, timeout_s=0.5, backoff_initial_s=0.2, backoff_max_s=1)
    replicas = start_replicas(tmp_path, redis_server.url, config, 3)
    victim, survivors = replicas[0], replicas[1:]
    client = redis_server.client(decode_responses=True)
    stop = threading.Event()
    created = [0]

    def traffic() -> None:
        i = 0
        while not stop.is_set():
            target = replicas[i % 3] if victim.process.poll() is None else survivors[i % 2]
            try:
                if target.post("/v1/tickets", {"player_id": f"k{i}", "mode": "duel", "mmr": 1000 + i},
                               timeout=5).status == 201:
                    created[0] += 1
            except OSError:
                pass  # the victim's connection cut by the kill
            i += 1
            time.sleep(0.01)

    feeder = threading.Thread(target=traffic, daemon=True)
    feeder.start()
    try:
        time.sleep(2.0)
        victim.kill()  # SIGKILL: no stop sequence, its pending entries stay its own
        # Consumers are named by replica id, "<host>-<pid>-<random>".
        held = sum(c["pending"] for c in client.xinfo_consumers(keys.EVENT_LOG, keys.WEBHOOK_GROUP)
                   if f"-{victim.process.pid}-" in c["name"])
        time.sleep(2.0)
        stop.set()
        feeder.join(10)
        wait_quiet(client)
        ids = log_ids(client)
        assert created[0] > 100 and len(ids) > 300
        missing = receiver.wait_for(ids, 45)
        assert missing == set(), f"{len(missing)} of {len(ids)} events never delivered"
        assert receiver.bad_signatures() == []
        # The killed replica held entries when it died; the survivors claimed and delivered them.
        assert held > 0
        duplicates = len([r for r in receiver.received if r.answered == 200]) - len(receiver.delivered_ids())
        print(f"\n{len(ids)} events, {created[0]} tickets; the killed replica held {held}; "
              f"all delivered, {duplicates} delivered twice")
        pending = client.xpending(keys.EVENT_LOG, keys.WEBHOOK_GROUP)["pending"]
        assert pending == 0
        assert all(r.process.poll() is None for r in survivors)
    finally:
        stop.set()
        stop_all(replicas)
        receiver.stop()
    assert [r.process.returncode for r in survivors] == [0, 0]


def test_dead_letters_are_listed_and_replayed_once_the_receiver_is_healthy(tmp_path, redis_server, secret_file):
    healthy = threading.Event()
    receiver = WebhookReceiver(SECRET, answer=lambda event_id, attempt: 200 if healthy.is_set() else 503).start()
    config = config_text(receiver.url, secret_file, max_attempts=2, timeout_s=0.2, backoff_initial_s=0.1,
                         backoff_max_s=0.2, events='["ticket.queued", "match.*"]')
    replicas = start_replicas(tmp_path, redis_server.url, config, 1)
    replica = replicas[0]
    client = redis_server.client(decode_responses=True)
    try:
        create_players(replicas, "d", 4)
        wait_quiet(client)
        wanted = {entry_id for entry_id, fields in client.xrange(keys.EVENT_LOG)
                  if fields["y"] == "ticket.queued" or fields["y"].startswith("match.")}
        deadline = time.monotonic() + 30
        while replica.admin("/admin/status").json()["webhooks"]["dead_letters"] < len(wanted):
            assert time.monotonic() < deadline, replica.admin("/admin/status").json()["webhooks"]
            time.sleep(0.2)
        assert receiver.delivered_ids() == set()
        assert all(receiver.attempts[event_id] == 2 for event_id in wanted)  # max_attempts, no more

        # Listing, in pages.
        first = replica.admin("/admin/webhooks/dead?limit=3").json()
        assert first["total"] == len(wanted) and len(first["dead_letters"]) == 3
        rest = replica.admin(f"/admin/webhooks/dead?limit=1000&after={first['next']}").json()
        letters = first["dead_letters"] + rest["dead_letters"]
        assert {letter["event"]["id"] for letter in letters} == wanted
        letter = letters[0]
        assert letter["attempts"] == 2 and letter["last_error"].startswith("HTTP 503")
        assert letter["dead_at"] >= letter["event"]["at"]
        assert replica.admin("/admin/webhooks/dead?limit=0").status == 400
        assert replica.admin("/admin/webhooks/dead?after=x").status == 400
        assert replica.admin("/admin/webhooks/dead/replay", "POST", {"ids": ["nope"]}).status == 400
        assert replica.admin("/admin/webhooks/dead/replay", "POST", {"all": True}).status == 400

        # Replay one by id, then all; receivers see the original event ids.
        healthy.set()
        one = replica.admin("/admin/webhooks/dead/replay", "POST", {"ids": [letter["id"], "1-0"]}).json()
        assert one == {"replayed": 1, "not_found": ["1-0"]}
        assert receiver.wait_for({letter["event"]["id"]}, 15) == set()
        everything = replica.admin("/admin/webhooks/dead/replay", "POST", {}).json()
        assert everything == {"replayed": len(wanted) - 1, "not_found": []}
        assert receiver.wait_for(wanted, 20) == set()
        assert receiver.bad_signatures() == []
        arrived = {r.event_id: r.event for r in receiver.received if r.answered == 200}
        assert arrived[letter["event"]["id"]] == letter["event"]
        assert replica.admin("/admin/webhooks/dead").json()["total"] == 0
        deadline = time.monotonic() + 10
        while client.xlen(keys.WEBHOOK_REPLAY) or client.xpending(keys.WEBHOOK_REPLAY, keys.WEBHOOK_GROUP)["pending"]:
            assert time.monotonic() < deadline, "replayed entries left behind"
            time.sleep(0.1)
        # Unwanted types were acknowledged unsent.
        assert not (set(receiver.attempts) - wanted)
        assert replica.admin("/admin/webhooks/dead", "DELETE").json() == {"discarded": 0}
    finally:
        stop_all(replicas)
        receiver.stop()


def test_without_webhooks_the_dead_letter_routes_answer_404(tmp_path, redis_server):
    path = tmp_path / "mm.toml"
    path.write_text("[modes.duel]\naccept_timeout_s = 0\n")
    replica = MMServer(tmp_path / "a", redis_url=redis_server.url, env={"MMSERVER_CONFIG": str(path)}).start()
    try:
        replica.wait_ready()
        answer = replica.admin("/admin/webhooks/dead")
        assert answer.status == 404 and answer.json()["title"] == "Webhooks not configured"
        assert replica.admin("/admin/webhooks/dead/replay", "POST", {}).status == 404
        assert "webhooks" not in replica.admin("/admin/status").json()
        assert redis_server.client().exists(keys.WEBHOOK_DEAD, keys.WEBHOOK_REPLAY) == 0
    finally:
        stop_all([replica])


class SilentReceiver:
    """Accepts connections and reads requests, never answers: every attempt times out."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, name="silent-receiver", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/hooks"

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def stop(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_a_receiver_that_never_answers_dead_letters_and_a_stop_is_not_held(tmp_path, redis_server, secret_file):
    receiver = SilentReceiver()
    config = config_text(receiver.url, secret_file, max_attempts=2, timeout_s=0.5, backoff_initial_s=0.1,
                         backoff_max_s=0.2, events='["ticket.queued"]')
    [replica] = start_replicas(tmp_path, redis_server.url, config, 1)
    try:
        create_players([replica], "s", 3)
        deadline = time.monotonic() + 30
        while replica.admin("/admin/status").json()["webhooks"]["dead_letters"] < 3:
            assert time.monotonic() < deadline, replica.admin("/admin/status").json()["webhooks"]
            time.sleep(0.2)
        letters = replica.admin("/admin/webhooks/dead").json()["dead_letters"]
        assert {letter["attempts"] for letter in letters} == {2}
        assert all(letter["last_error"].startswith("timeout") for letter in letters), letters
        # A delivery hanging on the silent receiver when the stop comes does not hold the stop.
        create_players([replica], "late", 1)
        time.sleep(0.2)
        started = time.monotonic()
        replica.signal(signal.SIGTERM)
        assert replica.wait(20) == 0
        assert time.monotonic() - started < 10
    finally:
        stop_all([replica])
        receiver.stop()
