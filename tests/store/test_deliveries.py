"""The Redis side of webhook delivery (mmserver/store/deliveries.py) on a real redis-server:
the consumer group, claims of due retries, dropped entries, dead letters, replay, consumers."""
from __future__ import annotations

import time

import pytest

from mmserver.store import keys
from mmserver.store.deliveries import KEPT, LAST_ATTEMPT, TAKEN, Deliveries, NoGroup, Waiting
from mmserver.store.events import LAST_STREAM_ID
from tests.store.conftest import new_ticket


def deliveries(redis_client, consumer: str = "replica-a", max_dead: int = 100) -> Deliveries:
    return Deliveries(redis_client, consumer=consumer, max_dead_letters=max_dead)


def two_read_by_a(store, redis_client):
    """Replicas "a" and "b", the group made, and two new events read by "a": (a, b, first, second)."""
    a, b = deliveries(redis_client, "a"), deliveries(redis_client, "b")
    a.ensure_groups()
    new_ticket(store, "p1")
    new_ticket(store, "p2")
    first, second = a.read_new(10, 10)
    return a, b, first, second


def test_events_before_the_group_are_not_sent_and_every_later_one_is_read_once(store, redis_client):
    new_ticket(store, "before")
    a, b = deliveries(redis_client, "a"), deliveries(redis_client, "b")
    a.ensure_groups()
    b.ensure_groups()  # idempotent across replicas
    new_ticket(store, "p1")
    new_ticket(store, "p2")
    got_a = a.read_new(1, 10)
    got_b = b.read_new(10, 10)
    assert [d.event["type"] for d in got_a + got_b] == ["ticket.queued", "ticket.queued"]
    assert {d.event["data"].get("player_id", d.event.get("ticket_id")) is not None for d in got_a + got_b}
    assert all(d.attempts == 1 for d in got_a + got_b)
    assert a.read_new(10, 10) == [] and b.read_new(10, 10) == []
    a.acknowledge(got_a + got_b)
    assert redis_client.xpending(keys.EVENT_LOG, keys.WEBHOOK_GROUP)["pending"] == 0


def test_a_due_entry_is_claimed_by_one_replica_and_a_trimmed_one_is_gone(store, redis_client):
    a, b, first, second = two_read_by_a(store, redis_client)  # then "a" dies holding both
    redis_client.xdel(keys.EVENT_LOG, second.entry_id)  # the log trimmed one before delivery
    time.sleep(0.05)
    waiting = b.waiting({}, 10, 0.02)
    assert [(w.entry_id, w.attempts) for w in waiting] == [(first.entry_id, 1), (second.entry_id, 1)]
    claimed, gone = b.claim(waiting, lambda w: 0.02)
    assert [(d.entry_id, d.attempts, d.event["type"]) for d in claimed] == [(first.entry_id, 2, "ticket.queued")]
    assert [w.entry_id for w in gone] == [second.entry_id]
    # The claim acknowledged the trimmed one: no other replica counts it dropped again.
    assert pending_ids(redis_client) == [first.entry_id]
    # Claimed just now: not idle enough for anyone else.
    assert a.claim(b.waiting({}, 10, 0), lambda w: 5.0) == ([], [])
    b.acknowledge(claimed)
    assert redis_client.xpending(keys.EVENT_LOG, keys.WEBHOOK_GROUP)["pending"] == 0


def pending_ids(redis_client, consumer: str | None = None) -> list[str]:
    rows = redis_client.xpending_range(keys.EVENT_LOG, keys.WEBHOOK_GROUP, "-", "+", 100, consumername=consumer)
    return [row["message_id"] for row in rows]


def test_an_attempt_is_counted_from_the_deliveries_redis_holds_at_the_claim(store, redis_client):
    a, b, c = deliveries(redis_client, "a"), deliveries(redis_client, "b"), deliveries(redis_client, "c")
    a.ensure_groups()
    new_ticket(store, "p1")
    a.read_new(10, 10)  # attempt 1, then "a" dies
    time.sleep(0.05)
    seen = b.waiting({}, 10, 0.02)  # b looks: one delivery so far
    assert [w.attempts for w in seen] == [1]
    (taken,), _ = c.claim(c.waiting({}, 10, 0.02), lambda w: 0.02)  # c retries first
    assert taken.attempts == 2
    time.sleep(0.05)  # c's attempt is due again (it died too)
    (late,), gone = b.claim(seen, lambda w: 0.02)
    assert late.attempts == 3 and gone == []
    (row,) = redis_client.xpending_range(keys.EVENT_LOG, keys.WEBHOOK_GROUP, "-", "+", 10)
    assert row["times_delivered"] == 3 and row["consumer"] == "b"


def test_keep_holds_an_entry_until_another_replica_claims_it_and_ends_one_the_log_dropped(store, redis_client):
    a, b, first, second = two_read_by_a(store, redis_client)
    time.sleep(0.1)
    assert a.keep(first, 0.1) == KEPT  # nobody took it: its idle time starts again
    (row,) = redis_client.xpending_range(keys.EVENT_LOG, keys.WEBHOOK_GROUP, first.entry_id, first.entry_id, 1)
    assert row["time_since_delivered"] < 90 and row["times_delivered"] == 1
    # b retries the other one meanwhile: it is b's now, and a lets go of it.
    due = [w for w in b.waiting({}, 10, 0.09) if w.entry_id == second.entry_id]
    (taken,), _ = b.claim(due, lambda w: 0.09)
    assert taken.entry_id == second.entry_id
    assert a.keep(second, 0.1) == TAKEN
    # Held while the log trimmed it: still a's, on Redis 6.2 and 7.0 alike, but acknowledged at
    # once, so the attempt a makes with the event it holds is the last and nobody else retries
    # it or counts it dropped.
    new_ticket(store, "p3")
    (third,) = a.read_new(10, 10)
    redis_client.xdel(keys.EVENT_LOG, third.entry_id)
    time.sleep(0.1)
    assert a.keep(third, 0.1) == LAST_ATTEMPT
    assert third.entry_id not in pending_ids(redis_client)
    time.sleep(0.1)
    assert [w for w in b.waiting({}, 10, 0.09) if w.entry_id == third.entry_id] == []
    # Taken by nobody, held by nobody: neither.
    assert a.keep(third, 0.1) == TAKEN
    redis_client.xgroup_destroy(keys.EVENT_LOG, keys.WEBHOOK_GROUP)
    with pytest.raises(NoGroup):
        a.keep(first, 0.1)
    with pytest.raises(NoGroup):
        b.claim([Waiting(keys.EVENT_LOG, first.entry_id, 1, 1.0)], lambda w: 0.0)
    with pytest.raises(NoGroup):
        b.waiting({}, 10, 0.0)
    with pytest.raises(NoGroup):
        b.read_new(10, 10)


def test_an_entry_another_replica_delivered_meanwhile_is_neither_claimed_nor_gone(store, redis_client):
    """Between `waiting` and `claim`, replica "a" delivers the entry: an event of the log, and a
    replayed copy, which leaves its stream when delivered, as a trimmed entry does. Only the
    trimmed one is dropped (the test above), on Redis 6.2 and 7.0 alike."""
    a, b = deliveries(redis_client, "a"), deliveries(redis_client, "b")
    a.ensure_groups()
    new_ticket(store, "p1")
    (delivery,) = a.read_new(10, 10)
    a.replay([a.bury(delivery, "HTTP 503")])
    new_ticket(store, "p2")
    held = a.read_new(10, 10)
    assert sorted(d.stream for d in held) == sorted([keys.EVENT_LOG, keys.WEBHOOK_REPLAY])
    time.sleep(0.05)
    waiting = b.waiting({}, 10, 0.02)
    assert sorted(w.entry_id for w in waiting) == sorted(d.entry_id for d in held)
    a.acknowledge(held)
    assert redis_client.xlen(keys.WEBHOOK_REPLAY) == 0
    assert b.claim(waiting, lambda w: 0.02) == ([], [])


def test_dead_letters_keep_the_event_and_replay_moves_them_back_once(store, redis_client):
    a = deliveries(redis_client, "a", max_dead=100)
    a.ensure_groups()
    new_ticket(store, "p1")
    (delivery,) = a.read_new(10, 10)
    dead_id = a.bury(delivery, "HTTP 503 Service Unavailable")
    assert redis_client.xpending(keys.EVENT_LOG, keys.WEBHOOK_GROUP)["pending"] == 0
    page = a.dead_letters(None, 10)
    assert page["total"] == 1 and page["next"] == dead_id
    (letter,) = page["dead_letters"]
    assert letter["event"] == delivery.event and letter["attempts"] == 1
    assert letter["last_error"] == "HTTP 503 Service Unavailable"
    assert a.dead_letters(dead_id, 10)["dead_letters"] == []
    assert a.dead_letters(LAST_STREAM_ID, 10) == {"dead_letters": [], "next": LAST_STREAM_ID, "total": 1}

    assert a.replay([dead_id, "1-0"]) == {"replayed": 1, "not_found": ["1-0"]}
    assert a.replay(None) == {"replayed": 0, "not_found": []}
    assert redis_client.xlen(keys.WEBHOOK_DEAD) == 0
    (again,) = a.read_new(10, 10)
    assert again.stream == keys.WEBHOOK_REPLAY and again.event == delivery.event  # the original id
    a.acknowledge([again])
    assert redis_client.xlen(keys.WEBHOOK_REPLAY) == 0  # delivered copies leave the stream


def test_dead_letters_are_bounded(store, redis_client):
    a = deliveries(redis_client, "a", max_dead=100)
    a.ensure_groups()
    for i in range(60):
        new_ticket(store, f"p{i}")
    for round_ in range(5):
        for d in a.read_new(100, 10):
            a.bury(d, "x")
        a.replay(None)
    # 300 burials of 60 events: MAXLEN ~ keeps about max_dead_letters (whole blocks of ~100).
    assert redis_client.xlen(keys.WEBHOOK_REPLAY) <= 200
    assert a.discard(None)["discarded"] <= 200


def test_consumers_owning_nothing_are_removed_never_one_with_entries(store, redis_client):
    a, b = deliveries(redis_client, "a"), deliveries(redis_client, "b")
    a.ensure_groups()
    new_ticket(store, "p1")
    new_ticket(store, "p2")
    assert len(a.read_new(1, 10)) == 1  # "a" owns an entry
    b.acknowledge(b.read_new(1, 10))  # "b" read one and owns nothing now
    assert b.remove_idle_consumers(0) == 1
    names = {c["name"] for c in redis_client.xinfo_consumers(keys.EVENT_LOG, keys.WEBHOOK_GROUP)}
    assert names == {"a"}
    a.leave()  # still owns its entry: stays
    assert {c["name"] for c in redis_client.xinfo_consumers(keys.EVENT_LOG, keys.WEBHOOK_GROUP)} == {"a"}


def test_stats_report_lag_of_the_oldest_undelivered_event(store, redis_client):
    a = deliveries(redis_client, "a")
    assert a.stats()["group"] is False
    a.ensure_groups()
    assert a.stats()["lag_s"] == 0.0
    new_ticket(store, "p1")
    time.sleep(0.2)
    unread = a.stats()
    assert unread["lag_s"] >= 0.2 and unread["pending"] == 0
    (d,) = a.read_new(10, 10)
    read = a.stats()
    assert read["pending"] == 1 and read["oldest_undelivered"] == d.entry_id
    a.acknowledge([d])
    assert a.stats()["lag_s"] == 0.0


def test_a_claim_that_meets_a_missing_group_changes_nothing(store, redis_client):
    a, b, first, second = two_read_by_a(store, redis_client)
    redis_client.xdel(keys.EVENT_LOG, second.entry_id)
    time.sleep(0.05)
    due = b.waiting({}, 10, 0.02)
    assert [w.entry_id for w in due] == [first.entry_id, second.entry_id]
    redis_client.xgroup_destroy(keys.WEBHOOK_REPLAY, keys.WEBHOOK_GROUP)
    with pytest.raises(NoGroup):
        b.claim([*due, Waiting(keys.WEBHOOK_REPLAY, "1-0", 1, 1.0)], lambda w: 0.02)
    rows = redis_client.xpending_range(keys.EVENT_LOG, keys.WEBHOOK_GROUP, "-", "+", 10)
    assert [(r["message_id"], r["consumer"], r["times_delivered"]) for r in rows] == [
        (first.entry_id, "a", 1), (second.entry_id, "a", 1)]
