import threading
import time

import pytest

from mmserver.config import ModeConfig, ServersConfig
from mmserver.store import NotFound, Store
from mmserver.store import keys
from tests.store.conftest import new_ticket


def _store(make_store, **servers):
    return make_store({"duel": ModeConfig("duel", accept_timeout_s=0)}, ServersConfig(**servers))


def _allocating(store, n=1):
    """n sessions waiting for a server; returns [(ticket, token) pairs] per session."""
    sessions = []
    for i in range(n):
        a = new_ticket(store, f"a{i}")
        b = new_ticket(store, f"b{i}")
        result, = store.claim("duel", None, [((a[0],), (b[0],))], 0)
        assert result.session_id
        sessions.append((a, b))
    return sessions


def test_static_server_is_allocated_and_finish_frees_it(make_store, redis_client):
    store = _store(make_store, static=("10.0.0.5:7777",))
    ((a, ta), (b, tb)), = _allocating(store)
    assert store.allocate(10) == (1, 0)
    view = store.read_ticket(a, ta)
    assert view["status"] == "assigned" and "session" not in view
    assignment = view["assignment"]
    assert assignment["server"] == "10.0.0.5:7777" and assignment["players"] == ["a0", "b0"]
    assert assignment["teams"] == [["a0"], ["b0"]] and assignment["region"] is None
    join_token = assignment.pop("join_token")
    assert len(join_token) == 40 and store.read_ticket(b, tb)["assignment"]["join_token"] != join_token
    assert store.stats()["servers"] == {"free": 0, "busy": 1, "stale": 0}
    assert store.stats()["queues"]["duel"]["assigned"] == 2
    finished = store.finish_match(assignment["match_id"])
    assert finished == {"match_id": assignment["match_id"], "status": "finished", "players": ["a0", "b0"]}
    for ticket, token in ((a, ta), (b, tb)):
        view = store.read_ticket(ticket, token)
        assert view["status"] == "finished" and view["reason"] == "match finished"
        assert view["assignment"] == assignment
        assert redis_client.ttl(keys.ticket(ticket)) > 0
    assert store.finish_match(assignment["match_id"]) == finished  # idempotent
    assert store.stats()["servers"] == {"free": 1, "busy": 0, "stale": 0}
    assert store.stats()["queues"]["duel"]["assigned"] == 0
    new_ticket(store, "a0")  # players released


def test_finish_of_an_unknown_match_is_not_found(store):
    with pytest.raises(NotFound):
        store.finish_match("nope")


def test_no_server_keeps_the_session_waiting(make_store):
    store = _store(make_store)
    ((a, ta), _), = _allocating(store)
    assert store.allocate(10) == (0, 1)
    assert store.read_ticket(a, ta)["session"]["state"] == "allocating"


def test_registered_server_is_allocated_while_fresh_and_never_when_stale(make_store):
    store = _store(make_store, heartbeat_ttl_s=0.2)
    first, second = _allocating(store, 2)
    assert store.heartbeat_server("gs-1", "10.0.0.9:7000") == {
        "server_id": "gs-1", "address": "10.0.0.9:7000", "region": None, "state": "free"}
    time.sleep(0.3)
    assert store.stats()["servers"] == {"free": 0, "busy": 0, "stale": 1}
    assert store.allocate(10) == (0, 2)
    # a re-registration with a new address refreshes and updates it
    store.heartbeat_server("gs-1", "10.0.0.10:7000")
    assert store.allocate(10) == (1, 1)
    views = [store.read_ticket(*pair[0]) for pair in (first, second)]
    view, = [v for v in views if v["status"] == "assigned"]
    assert view["assignment"]["server"] == "10.0.0.10:7000"
    busy = store.heartbeat_server("gs-1", "10.0.0.10:7000")
    assert busy["state"] == "busy" and busy["match_id"] == view["assignment"]["match_id"]


def test_allocation_timeout_dissolves_and_requeues_keeping_place(make_store):
    store = _store(make_store, allocation_timeout_s=0.2)
    ((a, ta), (b, tb)), = _allocating(store)
    enqueued = store.read_ticket(a, ta)["enqueued_at"]
    time.sleep(0.25)
    assert store.process_deadlines(100).allocation_timeouts == 1
    view = store.read_ticket(a, ta)
    assert view["status"] == "queued" and view["enqueued_at"] == enqueued and "reason" not in view
    assert store.read_ticket(b, tb)["status"] == "queued"
    assert len(store.read_queue("duel", None)) == 2
    assert store.stats()["sessions"]["allocating"] == 0


def test_silent_busy_server_ends_its_match(make_store):
    store = _store(make_store, heartbeat_ttl_s=0.2)
    ((a, ta), _), = _allocating(store)
    store.heartbeat_server("gs-1", "10.0.0.9:7000")
    assert store.allocate(10) == (1, 0)
    time.sleep(0.3)
    assert store.process_deadlines(100).lost_servers == 1
    view = store.read_ticket(a, ta)
    assert view["status"] == "finished" and view["reason"] == "server lost"
    assert store.stats()["servers"] == {"free": 0, "busy": 0, "stale": 1}
    assert store.heartbeat_server("gs-1", "10.0.0.9:7000")["state"] == "free"


def test_a_server_is_never_given_to_two_matches(redis_server, make_store):
    """Two stores on separate connections allocate concurrently from one server pool."""
    servers = ServersConfig(static=tuple(f"10.0.0.{i}:7777" for i in range(5)))
    modes = {"duel": ModeConfig("duel", accept_timeout_s=0)}
    store = make_store(modes, servers)
    sessions = _allocating(store, 20)
    clients = [redis_server.client(decode_responses=True) for _ in range(2)]
    stores = [Store(c, modes, servers) for c in clients]
    barrier = threading.Barrier(2)

    def run(s):
        barrier.wait()
        for _ in range(20):
            s.allocate(1)

    threads = [threading.Thread(target=run, args=(s,), name=f"alloc-{i}") for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    servers_used = []
    for (a, ta), _ in sessions:
        view = store.read_ticket(a, ta)
        if view["status"] == "assigned":
            servers_used.append(view["assignment"]["server"])
    assert sorted(servers_used) == sorted(servers.static)
    for c in clients:
        c.close()


def test_an_assigned_ticket_cannot_be_cancelled_or_declined(make_store):
    from mmserver.store import Conflict
    store = _store(make_store, static=("10.0.0.5:7777",))
    ((a, ta), _), = _allocating(store)
    store.allocate(10)
    with pytest.raises(Conflict):
        store.cancel_ticket(a, ta)
    with pytest.raises(Conflict):
        store.decline(a, ta)
    assert store.read_ticket(a, ta)["status"] == "assigned"


def test_declining_while_waiting_for_a_server_requeues_the_others(make_store):
    store = _store(make_store)
    ((a, ta), (b, tb)), = _allocating(store)
    assert store.decline(a, ta)["reason"] == "declined by player"
    assert store.read_ticket(b, tb)["status"] == "queued"
    assert store.stats()["sessions"]["allocating"] == 0


def test_assigned_matches_lists_running_matches_only(make_store):
    store = _store(make_store, static=("10.0.0.5:7777", "10.0.0.6:7777", "10.0.0.7:7777"))
    assert store.assigned_matches(10) == {"matches": [], "total": 0}
    _allocating(store, 3)
    assert store.allocate(10) == (3, 0)
    listed = store.assigned_matches(10)
    assert listed["total"] == 3 and len(listed["matches"]) == 3
    assert {m["server"] for m in listed["matches"]} == {"10.0.0.5:7777", "10.0.0.6:7777", "10.0.0.7:7777"}
    assert all(m["state"] == "assigned" and m["mode"] == "duel" for m in listed["matches"])
    created = [m["created_at"] for m in listed["matches"]]
    assert created == sorted(created, reverse=True)  # newest first
    # Each is the same document GET /admin/matches/{id} gives.
    assert all(store.match(m["match_id"]) == m for m in listed["matches"])
    # The limit bounds the reads, not the total.
    few = store.assigned_matches(2)
    assert few["total"] == 3 and len(few["matches"]) == 2
    # A finished match leaves the list.
    store.finish_match(listed["matches"][0]["match_id"])
    after = store.assigned_matches(10)
    assert after["total"] == 2
    assert listed["matches"][0]["match_id"] not in {m["match_id"] for m in after["matches"]}


def test_a_match_gone_between_the_two_reads_is_left_out_of_the_list(make_store, redis_client):
    store = _store(make_store, static=("10.0.0.5:7777", "10.0.0.6:7777"))
    _allocating(store, 2)
    assert store.allocate(10) == (2, 0)
    gone, kept = sorted(redis_client.smembers(keys.ASSIGNED))
    # As if the match ended (and its session expired) after the set was read.
    redis_client.delete(keys.session(gone))
    listed = store.assigned_matches(10)
    assert [m["match_id"] for m in listed["matches"]] == [kept]
