"""Ticket outcome counters (mm:o): every transition counted once, by the script that makes it,
read back through Store.stats(); repeats that change nothing count nothing."""
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mmserver.config import ModeConfig, ServersConfig
from mmserver.metrics import Metrics
from mmserver.store import NotFound, PlayerBusy, Store
from mmserver.store import keys
from tests.store.conftest import new_ticket

ZERO = dict.fromkeys(keys.TICKET_OUTCOMES, 0)


def outcomes(store: Store, mode: str = "duel") -> dict[str, int]:
    return store.stats()["outcomes"][mode]


def expect(**counts: int) -> dict[str, int]:
    return {**ZERO, **counts}


def _duel(make_store, accept=5.0, **servers) -> Store:
    return make_store({"duel": ModeConfig("duel", accept_timeout_s=accept)}, ServersConfig(**servers))


def _claim_pair(store: Store, first: str, second: str, accept: float):
    a = new_ticket(store, first)
    b = new_ticket(store, second)
    result, = store.claim("duel", None, [((a[0],), (b[0],))], accept)
    assert result.session_id
    return a, b


def test_every_configured_mode_reports_every_outcome_from_zero(make_store):
    store = make_store({"duel": ModeConfig("duel"), "squad": ModeConfig("squad", team_size=2)})
    assert store.stats()["outcomes"] == {"duel": ZERO, "squad": ZERO}
    new_ticket(store, "p1", mode="squad", party=["p2"])
    assert store.stats()["outcomes"] == {"duel": ZERO, "squad": expect(created=1)}


def test_create_counts_only_tickets_actually_created(store):
    new_ticket(store, "a")
    new_ticket(store, "b", region="eu")
    assert outcomes(store) == expect(created=2)
    with pytest.raises(PlayerBusy):
        new_ticket(store, "a")  # busy: nothing written, nothing counted
    assert outcomes(store) == expect(created=2)


def test_cancel_of_a_queued_ticket_counts_once(store):
    ticket, token = new_ticket(store, "a")
    store.cancel_ticket(ticket, token)
    store.cancel_ticket(ticket, token)  # idempotent repeat
    assert outcomes(store) == expect(created=1, cancelled=1)


def test_claim_counts_matched_tickets_at_claim_time_and_only_successful_proposals(make_store, redis_client):
    store = _duel(make_store)
    a, b, c, d = (new_ticket(store, p)[0] for p in "abcd")
    results = store.claim("duel", None, [((a,), (b,)), ((c,), ("ghost",)), ((a,), (d,))], 5)
    assert [r.session_id is not None for r in results] == [True, False, False]
    # The tickets' hashes are still pending in mm:cl: the count does not wait for them.
    assert redis_client.hlen(keys.CLAIMED) == 2
    assert outcomes(store) == expect(created=4, matched=2)


def test_decline_and_client_cancel_in_a_ready_check_count_one_cancel_each(make_store):
    store = _duel(make_store)
    (a, ta), (b, tb) = _claim_pair(store, "a", "b", 5)
    store.decline(a, ta)
    store.decline(a, ta)  # idempotent repeat
    assert store.cancel_ticket(a, ta)["status"] == "cancelled"  # already cancelled: no change
    assert store.read_ticket(b, tb)["status"] == "queued"  # requeued, not cancelled
    assert outcomes(store) == expect(created=2, matched=2, cancelled=1)

    result, = store.claim("duel", None, [((b,), (new_ticket(store, "c")[0],))], 5)
    assert result.session_id
    store.cancel_ticket(b, tb)
    store.cancel_ticket(b, tb)  # idempotent repeat
    assert outcomes(store) == expect(created=3, matched=4, cancelled=2)


def test_missed_ready_check_cancels_only_the_tickets_that_did_not_accept(make_store):
    store = _duel(make_store, accept=0.2)
    (a, ta), (b, tb) = _claim_pair(store, "a", "b", 0.2)
    store.accept(a, ta)
    time.sleep(0.25)
    assert store.process_deadlines(100).ready_checks == 1
    assert store.process_deadlines(100).ready_checks == 0  # a second pass finds nothing
    assert store.read_ticket(a, ta)["status"] == "queued"
    assert store.read_ticket(b, tb)["status"] == "cancelled"
    assert outcomes(store) == expect(created=2, matched=2, cancelled=1)


def test_allocation_timeout_requeues_without_an_outcome(make_store):
    store = _duel(make_store, accept=0, allocation_timeout_s=0.2)
    _claim_pair(store, "a", "b", 0)
    time.sleep(0.25)
    assert store.process_deadlines(100).allocation_timeouts == 1
    assert outcomes(store) == expect(created=2, matched=2)


def test_assign_and_finish_count_every_ticket_once(make_store):
    store = _duel(make_store, accept=0, static=("10.0.0.5:7777", "10.0.0.6:7777"))
    (a, ta), _ = _claim_pair(store, "a", "b", 0)
    _claim_pair(store, "c", "d", 0)
    assert store.allocate(10) == (2, 0)
    assert store.allocate(10) == (0, 0)  # nothing left: nothing counted
    assert outcomes(store) == expect(created=4, matched=4, assigned=4)
    match_id = store.read_ticket(a, ta)["assignment"]["match_id"]
    store.finish_match(match_id)
    store.finish_match(match_id)  # idempotent repeat
    assert outcomes(store) == expect(created=4, matched=4, assigned=4, finished=2)
    with pytest.raises(NotFound):
        store.finish_match("nope")
    assert outcomes(store)["finished"] == 2


def test_a_lost_server_finishes_its_match(make_store):
    store = _duel(make_store, accept=0, heartbeat_ttl_s=0.2)
    (a, ta), _ = _claim_pair(store, "a", "b", 0)
    store.heartbeat_server("gs-1", "10.0.0.9:7000")
    assert store.allocate(10) == (1, 0)
    time.sleep(0.3)
    assert store.process_deadlines(100).lost_servers == 1
    match_id = store.read_ticket(a, ta)["assignment"]["match_id"]
    store.finish_match(match_id)  # the server reports late: already finished
    assert store.process_deadlines(100).lost_servers == 0
    assert outcomes(store) == expect(created=2, matched=2, assigned=2, finished=2)


def test_ttl_expiry_counts_per_mode_and_once(make_store):
    store = make_store({"duel": ModeConfig("duel", ticket_ttl_s=0.2),
                        "squad": ModeConfig("squad", team_size=2, ticket_ttl_s=0.2)})
    new_ticket(store, "a")
    new_ticket(store, "b", region="eu")
    new_ticket(store, "c", mode="squad")
    kept, token = new_ticket(store, "d", mode="squad")
    time.sleep(0.1)
    store.read_ticket(kept, token)  # polled: its deadline moves on
    time.sleep(0.15)
    assert store.process_deadlines(100).expired_tickets == 3
    assert store.process_deadlines(100).expired_tickets == 0
    assert store.stats()["outcomes"] == {"duel": expect(created=2, expired=2),
                                         "squad": expect(created=2, expired=1)}


def test_counts_are_fleet_wide_and_outlive_the_store_that_made_them(make_store, redis_server):
    """Two replicas (two stores, two connections) count into one total; a new store, as after
    a restart, reads the same totals."""
    first = make_store()
    other_client = redis_server.client(decode_responses=True)
    try:
        second = make_store(client=other_client)
        ticket, token = new_ticket(first, "a")
        new_ticket(second, "b")
        second.cancel_ticket(ticket, token)
        assert outcomes(first) == outcomes(second) == expect(created=2, cancelled=1)
        assert outcomes(make_store()) == expect(created=2, cancelled=1)
    finally:
        other_client.close()


def test_metrics_export_the_stored_counts(store):
    ticket, token = new_ticket(store, "a")
    store.cancel_ticket(ticket, token)
    metrics = Metrics()
    metrics.watch(stats=store.stats, subscriber_status=dict)
    data, _ = metrics.render()
    found = {s.labels["outcome"]: s.value
             for family in text_string_to_metric_families(data.decode("utf-8"))
             for s in family.samples if s.name == "mmserver_tickets_total" and s.labels["mode"] == "duel"}
    assert found == {**dict.fromkeys(keys.TICKET_OUTCOMES, 0.0), "created": 1.0, "cancelled": 1.0}
