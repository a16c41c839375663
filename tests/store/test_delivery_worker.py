"""The delivery worker against a real redis-server and a real receiver
(tests/webhook_receiver.py): an event held while the log dropped it gets one last attempt (a
failure makes it a dead letter rather than a retry nobody could make); two replicas working
through a slow receiver send each event once; an event a stopped replica held is sent, not
buried unsent."""
from __future__ import annotations

import threading
import time

import pytest

from mmserver.backoff import Backoff
from mmserver.shutdown import Shutdown
from mmserver.store import keys
from mmserver.store.deliveries import Deliveries
from mmserver.webhooks.retry import RetryPolicy
from mmserver.webhooks.sender import Sender
from mmserver.webhooks.worker import HOLD_CHECK_S, DeliveryWorker
from tests.store.conftest import new_ticket
from tests.webhook_receiver import WebhookReceiver

SECRET = "test-secret-of-32-characters-at-least"


class Outcomes:
    """The worker's Recorder: what it counted."""

    def __init__(self) -> None:
        self.counted: list[str] = []

    def webhook_delivery(self, outcome: str, count: int = 1) -> None:
        self.counted += [outcome] * count

    def webhook_latency(self, seconds: float) -> None:
        pass


@pytest.mark.parametrize("status", [503, 200])
def test_an_event_held_while_the_log_dropped_it_gets_one_last_attempt(store, redis_client, status):
    receiver = WebhookReceiver(SECRET, answer=lambda event_id, attempt: status).start()
    deliveries = Deliveries(redis_client, consumer="a", max_dead_letters=100)
    outcomes = Outcomes()
    worker = DeliveryWorker(deliveries, Sender(receiver.url, 2.0), secret=SECRET,
                            policy=RetryPolicy(10, 1.0, 60.0, 2.0), wants=lambda kind: True,
                            shutdown=Shutdown(), backoff=Backoff(100, 1000, 3), recorder=outcomes)
    try:
        deliveries.ensure_groups()
        new_ticket(store, "p1")
        (delivery,) = deliveries.read_new(10, 10)
        redis_client.xdel(keys.EVENT_LOG, delivery.entry_id)  # trimmed while the worker holds it
        time.sleep(HOLD_CHECK_S + 0.1)  # held long enough to be checked before the attempt
        worker._deliver_all([delivery])
        assert [r.event_id for r in receiver.received] == [delivery.event["id"]]
        assert redis_client.xpending(keys.EVENT_LOG, keys.WEBHOOK_GROUP)["pending"] == 0
        letters = deliveries.dead_letters(None, 10)["dead_letters"]
        if status == 200:
            assert outcomes.counted == ["delivered"] and letters == []
        else:
            assert outcomes.counted == ["failed", "dead"]
            (letter,) = letters
            assert letter["event"] == delivery.event and "left the log" in letter["last_error"]
    finally:
        receiver.stop()


def _worker(deliveries, receiver, outcomes, policy):
    return DeliveryWorker(deliveries, Sender(receiver.url, 2.0), secret=SECRET, policy=policy,
                          wants=lambda kind: True, shutdown=Shutdown(), backoff=Backoff(100, 1000, 3),
                          recorder=outcomes)


def test_two_replicas_working_through_a_slow_receiver_send_each_event_once(store, redis_client):
    """Replica a delivers a batch to a receiver answering in 0.4 s while replica b scans for
    due retries (due after timeout_s + 1 = 1.3 s idle). Before, a acknowledged its batch only
    at the end and held only the entry it was about to send: b sent the delivered and the
    waiting ones again, and with max_attempts = 1 buried waiting ones never sent."""
    def slow(event_id, attempt):
        time.sleep(0.4)
        return 200

    receiver = WebhookReceiver(SECRET, answer=slow).start()
    policy = RetryPolicy(1, 0.1, 1.0, 0.3)
    a_log = Deliveries(redis_client, consumer="a", max_dead_letters=100)
    b_log = Deliveries(redis_client, consumer="b", max_dead_letters=100)
    a, b = _worker(a_log, receiver, Outcomes(), policy), _worker(b_log, receiver, Outcomes(), policy)
    done = threading.Event()

    def scan():
        while not done.is_set():
            b._retry_due()
            time.sleep(0.05)

    scanner = threading.Thread(target=scan, daemon=True)
    try:
        a_log.ensure_groups()
        for i in range(8):
            new_ticket(store, f"p{i}")
        batch = a_log.read_new(32, 10)
        assert len(batch) == 8
        scanner.start()
        a._deliver_all(batch)  # ~3.2 s: the last entries wait well past b's retry delay
        time.sleep(policy.shortest_delay + 0.3)  # b's scans go on past the delay of the last one
        done.set()
        scanner.join(5)
        sent = [r.event_id for r in receiver.received]
        assert sorted(sent) == sorted(d.event["id"] for d in batch)  # each once
        assert a_log.dead_letters(None, 10)["dead_letters"] == []
        assert redis_client.xpending(keys.EVENT_LOG, keys.WEBHOOK_GROUP)["pending"] == 0
    finally:
        done.set()
        receiver.stop()


@pytest.mark.parametrize("status", [200, 503])
def test_an_event_a_stopped_replica_held_is_sent_once_more_not_buried_unsent(store, redis_client, status):
    """Redis's delivery count counts reads and claims: a replica that read an event and
    stopped before its attempt leaves a count of 1, and the retry's claim makes it 2. With
    max_attempts = 1 that was buried unsent; it now gets one last attempt."""
    receiver = WebhookReceiver(SECRET, answer=lambda event_id, attempt: status).start()
    policy = RetryPolicy(1, 0.1, 1.0, 0.2)
    stopped = Deliveries(redis_client, consumer="stopped", max_dead_letters=100)
    live_log = Deliveries(redis_client, consumer="live", max_dead_letters=100)
    outcomes = Outcomes()
    live = _worker(live_log, receiver, outcomes, policy)
    try:
        stopped.ensure_groups()
        new_ticket(store, "p1")
        (held,) = stopped.read_new(10, 10)  # and never attempted
        time.sleep(policy.shortest_delay + 0.2)
        live._retry_due()
        assert [r.event_id for r in receiver.received] == [held.event["id"]]
        letters = live_log.dead_letters(None, 10)["dead_letters"]
        if status == 200:
            assert outcomes.counted == ["delivered"] and letters == []
        else:
            assert outcomes.counted == ["failed", "dead"] and len(letters) == 1
        assert redis_client.xpending(keys.EVENT_LOG, keys.WEBHOOK_GROUP)["pending"] == 0
    finally:
        receiver.stop()
