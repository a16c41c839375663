import time

import pytest

from mmserver.config import ModeConfig, ServersConfig
from mmserver.store import Conflict, PlayerBusy
from mmserver.store import keys
from tests.store.conftest import new_ticket


def _duel(make_store, accept=5.0, **servers):
    return make_store({"duel": ModeConfig("duel", accept_timeout_s=accept)}, ServersConfig(**servers))


def _matched_pair(store, accept=5.0):
    a = new_ticket(store, "a", mmr=1500)
    b = new_ticket(store, "b", mmr=1510)
    result, = store.claim("duel", None, [((a[0],), (b[0],))], accept)
    assert result.session_id and result.failed == ()
    return a, b, result.session_id


def test_claim_moves_every_ticket_into_one_session(make_store, redis_client):
    store = _duel(make_store)
    (a, ta), (b, tb), sid = _matched_pair(store)
    assert redis_client.zcard(keys.queue("duel", None)) == 0
    for ticket, token in ((a, ta), (b, tb)):
        view = store.read_ticket(ticket, token)
        assert view["status"] == "matched" and view["version"] == 2
        assert view["session"]["session_id"] == sid
        assert view["session"]["state"] == "accepting" and view["session"]["accepted"] is False
        assert view["session"]["accept_deadline"] > view["updated_at"]
    assert store.stats()["queues"]["duel"]["matched"] == 2
    assert store.stats()["sessions"]["accepting"] == 1


def test_claim_is_all_or_nothing_per_proposal(make_store, redis_client):
    store = _duel(make_store)
    a, _ = new_ticket(store, "a")
    b, tb = new_ticket(store, "b")
    c, _ = new_ticket(store, "c")
    d, _ = new_ticket(store, "d")
    store.cancel_ticket(b, tb)
    results = store.claim("duel", None, [((a,), (b,)), ((c,), (d,)), ((c,), ("ghost",))], 5)
    assert results[0].session_id is None and results[0].failed == (b,)
    assert results[1].session_id is not None
    assert results[2].session_id is None and set(results[2].failed) == {c, "ghost"}
    # a was not claimed by the failed proposal: still queued, in its queue
    assert [t.ticket_id for t in store.read_queue("duel", None)] == [a]
    # the same ticket twice in one proposal is refused
    assert store.claim("duel", None, [((a,), (a,))], 5)[0].failed == (a,)
    # and a ticket from another queue is not claimed from this one
    e, _ = new_ticket(store, "e", region="eu")
    assert store.claim("duel", None, [((a,), (e,))], 5)[0].failed == (e,)


def test_all_accept_moves_the_session_to_allocating(make_store):
    store = _duel(make_store)
    (a, ta), (b, tb), sid = _matched_pair(store)
    first = store.accept(a, ta)
    assert first["session"]["accepted"] is True and first["version"] == 3
    assert store.accept(a, ta) == first  # idempotent
    assert store.read_ticket(b, tb)["session"]["accepted"] is False
    store.accept(b, tb)
    for ticket, token in ((a, ta), (b, tb)):
        session = store.read_ticket(ticket, token)["session"]
        assert session["state"] == "allocating" and session["accept_deadline"] is None
    assert store.stats()["sessions"] == {"accepting": 0, "allocating": 1, "assigned": 0}


def test_accept_on_a_queued_ticket_conflicts(store):
    a, ta = new_ticket(store, "a")
    with pytest.raises(Conflict):
        store.accept(a, ta)
    with pytest.raises(Conflict):
        store.decline(a, ta)


def test_decline_cancels_the_decliner_and_requeues_the_others_keeping_their_place(make_store):
    store = _duel(make_store)
    (a, ta), (b, tb), sid = _matched_pair(store)
    before = store.read_ticket(b, tb)
    store.accept(b, tb)
    view = store.decline(a, ta)
    assert view["status"] == "cancelled" and view["reason"] == "declined by player"
    assert "session" not in view
    back = store.read_ticket(b, tb)
    assert back["status"] == "queued" and "session" not in back
    assert back["enqueued_at"] == before["enqueued_at"]
    assert back["version"] > before["version"]
    queued, = store.read_queue("duel", None)
    assert queued.ticket_id == b and queued.enqueued_at == before["enqueued_at"]
    assert store.decline(a, ta)["status"] == "cancelled"  # idempotent
    stats = store.stats()
    assert stats["sessions"]["accepting"] == 0 and stats["queues"]["duel"]["matched"] == 0
    new_ticket(store, "a")  # released
    # b was requeued, not freed
    with pytest.raises(PlayerBusy):
        new_ticket(store, "b")


def test_cancelling_a_matched_ticket_dissolves_its_session(make_store):
    store = _duel(make_store)
    (a, ta), (b, tb), sid = _matched_pair(store)
    assert store.cancel_ticket(a, ta)["reason"] == "cancelled by client"
    assert store.read_ticket(b, tb)["status"] == "queued"


def test_missed_ready_check_cancels_non_accepters_and_requeues_accepters(make_store, redis_client):
    store = _duel(make_store, accept=0.2)
    (a, ta), (b, tb), sid = _matched_pair(store, accept=0.2)
    enqueued_a = store.read_ticket(a, ta)["enqueued_at"]
    store.accept(a, ta)
    assert store.process_deadlines(100).ready_checks == 0  # not due yet
    time.sleep(0.25)
    with pytest.raises(Conflict):
        store.accept(b, tb)  # after the deadline, even before a tick processed it
    with pytest.raises(Conflict):
        store.decline(b, tb)
    counts = store.process_deadlines(100)
    assert counts.ready_checks == 1
    a_view, b_view = store.read_ticket(a, ta), store.read_ticket(b, tb)
    assert a_view["status"] == "queued" and a_view["enqueued_at"] == enqueued_a
    assert b_view["status"] == "cancelled" and b_view["reason"] == "ready check timed out"
    assert not redis_client.exists(keys.session(sid))
    assert store.process_deadlines(100).total == 0  # a second pass finds nothing


def test_no_ready_check_goes_straight_to_allocating(make_store):
    store = _duel(make_store, accept=0)
    a, ta = new_ticket(store, "a")
    b, tb = new_ticket(store, "b")
    store.claim("duel", None, [((a,), (b,))], 0)
    session = store.read_ticket(a, ta)["session"]
    assert session == {"session_id": session["session_id"], "accept_deadline": None,
                       "accepted": True, "state": "allocating"}
    assert store.accept(a, ta)["session"]["state"] == "allocating"  # nothing to accept


def test_matched_ticket_keeps_its_ttl_deadline_through_a_failed_session(make_store):
    # A client that vanished while matched is expired soon after its session fails.
    store = make_store({"duel": ModeConfig("duel", accept_timeout_s=5, ticket_ttl_s=0.2)})
    (a, ta), (b, tb), sid = _matched_pair(store)
    time.sleep(0.3)
    store.read_ticket(a, ta)  # a polls, b does not
    store.cancel_ticket(a, ta)
    assert store.process_deadlines(100).expired_tickets == 1
    assert store.read_ticket(b, tb)["status"] == "expired"


def test_one_claim_call_never_claims_a_ticket_twice(make_store):
    store = _duel(make_store)
    a, _ = new_ticket(store, "a")
    b, _ = new_ticket(store, "b")
    c, _ = new_ticket(store, "c")
    store.read_queue("duel", None)  # claims then name exact queue members, as the tick does
    results = store.claim("duel", None, [((a,), (b,)), ((a,), (c,))], 5)
    assert results[0].session_id and results[1].failed == (a,)
    assert [t.ticket_id for t in store.read_queue("duel", None)] == [c]


def test_a_batch_the_joined_columns_cannot_carry_is_claimed_all_the_same(make_store, redis_client, monkeypatch):
    """claim.lua takes its columns joined by newlines; a batch with an empty team or an id
    holding ',', ';' or a newline goes one argument per value, with the same answers."""
    store = _duel(make_store)
    a, b, c, d, e, f, g, h = (new_ticket(store, p)[0] for p in "abcdefgh")
    store.read_queue("duel", None)
    layouts = []
    call = store._sessions._scripts.call

    def spy(name, args):
        if name == "claim":
            layouts.append(args[6])
        return call(name, args)

    monkeypatch.setattr(store._sessions._scripts, "call", spy)
    first = store.claim("duel", None, [((a,), (b,)), ((a,), (c,))], 5)
    assert first[0].session_id and first[1].failed == (a,)
    results = store.claim("duel", None, [((c,), ()), ((d,), ("x,y",)), ((e,), ("z\nw",)),
                                         ((f,), ("u;v",)), ((g,), (c,))], 5)
    assert layouts == ["j", "a"]
    assert results[0].session_id and results[0].failed == ()
    assert [r.failed for r in results[1:]] == [("x", "y"), ("z\nw",), ("u;v",), (c,)]
    assert redis_client.hget(keys.PENDING_SESSIONS, results[0].session_id).endswith(f"|{c};")
    assert sorted(t.ticket_id for t in store.read_queue("duel", None)) == sorted([d, e, f, g, h])
    # A bare id (missing from the last read) and the same ticket twice in one proposal.
    store._sessions._members[keys.queue("duel", None)].pop(d)
    results = store.claim("duel", None, [((e,), (e,)), ((d,), (f,))], 5)
    assert layouts[-1] == "j"
    assert results[0].failed == (e,) and results[1].session_id
    assert sorted(t.ticket_id for t in store.read_queue("duel", None)) == sorted([e, g, h])
    # Proposals of different sizes, one with extras and one without (the shortcuts of one
    # count for all and no extras at all do not apply).
    mx = '{"a":{"map":"x"}}'
    first, second = store.claim("duel", None, [((e,), (g,)), ((h,),)], 5, choices=["", f"|{mx}"])
    assert layouts[-1] == "j" and first.session_id and second.session_id
    assert redis_client.hget(keys.PENDING_SESSIONS, first.session_id).endswith(f"|{e};{g}")
    assert redis_client.hget(keys.PENDING_SESSIONS, second.session_id).endswith(f"|{h}|{mx}")
    assert store.read_queue("duel", None) == []


def test_a_claimed_session_is_written_by_the_first_script_that_loads_it(make_store, redis_client):
    store = _duel(make_store)
    (a, ta), (b, tb), sid = _matched_pair(store)
    # the claim recorded the session in one batched entry, no hash of its own yet
    assert redis_client.hexists(keys.PENDING_SESSIONS, sid)
    assert not redis_client.exists(keys.session(sid))
    view = store.read_ticket(a, ta)  # a read shows it without writing it
    assert view["session"]["state"] == "accepting" and view["session"]["accept_deadline"]
    assert redis_client.hexists(keys.PENDING_SESSIONS, sid)
    store.accept(a, ta)  # the first change writes the hash and drops the entry
    assert not redis_client.hexists(keys.PENDING_SESSIONS, sid)
    stored = redis_client.hgetall(keys.session(sid))
    assert stored["st"] == "accepting" and stored["n"] == "1" and stored["c"] == "2"
    assert stored["tk"] == f"{a};{b}" and stored["md"] == "duel"
    assert store.accept(b, tb)["session"]["state"] == "allocating"


def test_a_claimed_ticket_reads_as_matched_with_one_more_version(make_store, redis_client):
    store = _duel(make_store)
    (a, ta), (b, tb), sid = _matched_pair(store)
    # the claim recorded the new state without rewriting the tickets: still queued records
    assert redis_client.hexists(keys.queued_tickets(b), b)
    assert not redis_client.exists(keys.ticket(b))
    assert redis_client.hexists(keys.CLAIMED, b)
    view = store.read_ticket(b, tb)
    assert view["status"] == "matched" and view["version"] == 2
    assert keys.unpack_ticket(redis_client.get(keys.ticket(b)))["s"] == "matched"
    assert not redis_client.hexists(keys.queued_tickets(b), b)  # moved to its own record
    assert not redis_client.hexists(keys.CLAIMED, b)
    assert store.read_ticket(b, tb) == view  # applied once
    with pytest.raises(PlayerBusy):
        new_ticket(store, "b")


def test_a_queue_read_reuses_the_tickets_of_members_it_read_before(make_store):
    """read_queue keeps each member's ticket from one read to the next (a queued member never
    changes): the same object comes back while the ticket stays queued, a ticket that left is
    gone, and one that came, or came back, is read from its member."""
    store = _duel(make_store)
    (a, _), (b, tb) = new_ticket(store, "a", mmr=1500), new_ticket(store, "b", mmr=1600)
    first = {t.ticket_id: t for t in store.read_queue("duel", None)}
    assert set(first) == {a, b}
    store.cancel_ticket(b, tb)
    c, tc = new_ticket(store, "c", mmr=1700)
    second = {t.ticket_id: t for t in store.read_queue("duel", None)}
    assert set(second) == {a, c}
    assert second[a] is first[a]
    assert second[c].mmr == 1700
    # Claimed, then requeued by c's decline (a keeps its place): read as queued again.
    store.claim("duel", None, [((a,), (c,))], 5.0)
    assert store.read_queue("duel", None) == []
    store.decline(c, tc)
    third = {t.ticket_id: t for t in store.read_queue("duel", None)}
    assert set(third) == {a} and third[a] == first[a]
