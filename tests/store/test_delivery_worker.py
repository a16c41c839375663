"""The delivery worker's attempt for an event it held while the log dropped it, on a real
redis-server with a real receiver (tests/webhook_receiver.py): the attempt is the event's last,
so a failure makes it a dead letter rather than a retry nobody could make."""
from __future__ import annotations

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
        assert worker._deliver(delivery) is (status == 200)
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
