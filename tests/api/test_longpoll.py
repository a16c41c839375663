"""Long-polls on a real Store: woken promptly, timing out unchanged, the cap, the drain."""
from __future__ import annotations

import threading
import time

import pytest

from tests.api.conftest import create_ticket
from tests.waiting import PROMPTLY_S, wait_until

# The wait a change must cut short (the API's longest): "answered at once" means well below it,
# with a bound (PROMPTLY_S) that holds on a loaded machine and still fails if nothing woke it.
LONG_WAIT = 30


class Poll(threading.Thread):
    """GET /v1/tickets/{id}?wait=... from another thread, timing the answer."""

    def __init__(self, client, ticket_id: str, auth: dict, query: str) -> None:
        super().__init__(name=f"poll-{ticket_id}", daemon=True)
        self.client, self.path, self.auth, self.query = client, f"/v1/tickets/{ticket_id}", auth, query
        self.result = None
        self.answered_at: float | None = None

    def run(self) -> None:
        self.result = self.client.simulate_get(self.path, query_string=self.query, headers=self.auth)
        self.answered_at = time.monotonic()


def start_poll(client, waiters, ticket: dict, auth: dict, query: str) -> Poll:
    before = waiters.waiting
    poll = Poll(client, ticket["ticket_id"], auth, query)
    poll.start()
    assert wait_until(lambda: waiters.waiting == before + 1, PROMPTLY_S, interval=0.002), \
        "the long-poll never started waiting"
    return poll


def answered(poll: Poll) -> float:
    """When the poll answered; fails if it still waits after the prompt bound."""
    poll.join(PROMPTLY_S)
    assert not poll.is_alive() and poll.answered_at is not None, "the long-poll is still waiting"
    return poll.answered_at


def test_answers_promptly_after_a_change(client, store, waiters):
    ticket, auth = create_ticket(client)
    token = auth["Authorization"].split()[1]
    poll = start_poll(client, waiters, ticket, auth, f"wait={LONG_WAIT}&version={ticket['version']}")
    changed = store.cancel_ticket(ticket["ticket_id"], token)
    changed_at = time.monotonic()
    waiters.notify([ticket["ticket_id"]])
    answered_at = answered(poll)
    assert poll.result.status_code == 200
    assert poll.result.json["status"] == "cancelled"
    assert poll.result.json["version"] == changed["version"]
    assert answered_at - changed_at < PROMPTLY_S
    assert waiters.waiting == 0


def test_wait_without_version_waits_for_any_change(client, store, waiters):
    ticket, auth = create_ticket(client)
    poll = start_poll(client, waiters, ticket, auth, f"wait={LONG_WAIT}")
    store.cancel_ticket(ticket["ticket_id"], auth["Authorization"].split()[1])
    waiters.notify([ticket["ticket_id"]])
    answered(poll)
    assert poll.result.json["version"] > ticket["version"]


def test_events_published_by_the_store_wake_the_poll(client, store, waiters, redis_client):
    # The subscriber's job in miniature: mm:events payloads handed to Waiters.on_event.
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("mm:events")
    stop = threading.Event()

    def subscriber() -> None:
        while not stop.is_set():
            message = pubsub.get_message(timeout=0.05)
            if message:
                waiters.on_event(message["channel"], message["data"])

    thread = threading.Thread(target=subscriber, name="test-subscriber", daemon=True)
    thread.start()
    try:
        ticket, auth = create_ticket(client)
        poll = start_poll(client, waiters, ticket, auth, f"wait={LONG_WAIT}&version={ticket['version']}")
        started = time.monotonic()
        store.cancel_ticket(ticket["ticket_id"], auth["Authorization"].split()[1])
        answered_at = answered(poll)
        assert poll.result.json["status"] == "cancelled"
        assert answered_at - started < PROMPTLY_S
    finally:
        stop.set()
        thread.join(2)
        pubsub.close()


def test_an_event_for_another_ticket_does_not_answer(client, store, waiters):
    ticket, auth = create_ticket(client, player_id="p1")
    other, other_auth = create_ticket(client, player_id="p2")
    poll = start_poll(client, waiters, ticket, auth, f"wait=0.6&version={ticket['version']}")
    store.cancel_ticket(other["ticket_id"], other_auth["Authorization"].split()[1])
    waiters.notify([other["ticket_id"]])
    waiters.notify([ticket["ticket_id"]])  # a spurious wake: version unchanged, keeps waiting
    started = time.monotonic()
    answered_at = answered(poll)
    assert poll.result.json["version"] == ticket["version"]
    # a lower bound: a loaded machine only makes the answer later
    assert answered_at - started > 0.4


def test_timeout_answers_the_unchanged_state(client, waiters):
    ticket, auth = create_ticket(client)
    started = time.monotonic()
    result = client.simulate_get(f"/v1/tickets/{ticket['ticket_id']}",
                                 query_string=f"wait=0.3&version={ticket['version']}", headers=auth)
    elapsed = time.monotonic() - started
    assert result.status_code == 200
    assert result.json["status"] == "queued"
    assert result.json["version"] == ticket["version"]
    assert 0.3 <= elapsed < PROMPTLY_S
    assert waiters.waiting == 0


@pytest.mark.parametrize("query", [f"wait={LONG_WAIT}&version=0", "wait=0&version=999", "version=999"])
def test_answers_at_once_when_already_newer_or_not_waiting(client, query):
    ticket, auth = create_ticket(client)
    started = time.monotonic()
    result = client.simulate_get(f"/v1/tickets/{ticket['ticket_id']}", query_string=query, headers=auth)
    assert result.status_code == 200
    assert time.monotonic() - started < PROMPTLY_S


def test_cap_reached_answers_at_once(client, waiters):
    held = [waiters.register(f"other-{i}") for i in range(waiters.max_waiting)]
    assert all(held)
    try:
        ticket, auth = create_ticket(client)
        started = time.monotonic()
        result = client.simulate_get(f"/v1/tickets/{ticket['ticket_id']}",
                                     query_string=f"wait={LONG_WAIT}&version={ticket['version']}", headers=auth)
        assert result.status_code == 200
        assert result.json["version"] == ticket["version"]
        assert time.monotonic() - started < PROMPTLY_S
    finally:
        for waiter in held:
            waiters.unregister(waiter)


def test_close_answers_waiting_polls_at_once(client, waiters):
    ticket, auth = create_ticket(client)
    poll = start_poll(client, waiters, ticket, auth, f"wait={LONG_WAIT}&version={ticket['version']}")
    closed_at = time.monotonic()
    waiters.close()
    answered_at = answered(poll)
    assert poll.result.status_code == 200
    assert poll.result.json["status"] == "queued"
    assert answered_at - closed_at < PROMPTLY_S
    started = time.monotonic()  # and later polls do not wait
    later = client.simulate_get(f"/v1/tickets/{ticket['ticket_id']}",
                                query_string=f"wait={LONG_WAIT}&version={ticket['version']}", headers=auth)
    assert later.status_code == 200
    assert time.monotonic() - started < PROMPTLY_S


def test_an_operator_drain_keeps_long_polls_waiting(client, readiness):
    """Only the stop sequence (Waiters.close) ends waits: a drained replica that keeps serving
    must not turn its long-polls into a tight re-poll loop."""
    ticket, auth = create_ticket(client)
    readiness.drain()
    started = time.monotonic()
    result = client.simulate_get(f"/v1/tickets/{ticket['ticket_id']}",
                                 query_string=f"wait=0.5&version={ticket['version']}", headers=auth)
    assert result.status_code == 200
    assert time.monotonic() - started >= 0.45


def test_a_forbidden_poll_releases_its_waiter(client, waiters):
    ticket, _ = create_ticket(client)
    result = client.simulate_get(f"/v1/tickets/{ticket['ticket_id']}", query_string="wait=5",
                                 headers={"Authorization": "Bearer wrong"})
    assert result.status_code == 403
    assert waiters.waiting == 0
