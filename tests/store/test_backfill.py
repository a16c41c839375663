"""Backfills and leaves against the real redis-server: the scripts' checks, the roster, the
counts, the events and the invariants (tests/store/invariants.py)."""
import hashlib
import time
from collections import Counter

import pytest

from mmserver.config import ModeConfig, ServersConfig
from mmserver.matchmaking.backfill import Fill, Slot
from mmserver.store import Conflict, Forbidden, NotFound, Store, keys
from mmserver.store.events import EventLog
from mmserver.store.tickets import player_access
from tests.store.conftest import new_ticket
from tests.store.invariants import check_invariants

MODES = {"duel": ModeConfig("duel", accept_timeout_s=0),
         "squad": ModeConfig("squad", team_size=2, teams=2, accept_timeout_s=0, mmr_window=200)}


@pytest.fixture
def store(redis_client):
    return Store(redis_client, MODES, ServersConfig(static=("10.0.0.5:7777", "10.0.0.6:7777")),
                 retention_s=60)


def squad_match(store, *, party=True):
    """ann+amy (a party) against bob and cat, assigned to a server."""
    a = new_ticket(store, "ann", mode="squad", mmr=1500, party=["amy"] if party else [])
    b = new_ticket(store, "bob", mode="squad", mmr=1510)
    c = new_ticket(store, "cat", mode="squad", mmr=1490)
    first = (a[0],) if party else (a[0], new_ticket(store, "amy", mode="squad", mmr=1500)[0])
    result, = store.claim("squad", None, [(first, (b[0], c[0]))], 0)
    assert store.allocate(10)[0] == 1
    return result.session_id, a, b, c


def fill_from_queue(store, mode="squad"):
    """What a tick does for backfills: read the queue, plan, fill (tests/unit cover the plan)."""
    from mmserver.matchmaking import MatchRules
    from mmserver.matchmaking.backfill import plan_backfills
    tickets = store.read_queue(mode, None)
    fills = plan_backfills(store.open_backfills(mode, 100), tickets, MatchRules.from_mode(MODES[mode]),
                           store.now())
    return fills, store.fill_backfills(mode, None, MODES[mode].team_size, fills)


def team_players(match):
    return [[p["player_id"] for p in team["players"]] for team in match["teams"]]


def test_leave_then_backfill_fills_the_place_from_the_queue(store, redis_client):
    mid, a, b, c = squad_match(store)
    assert store.match(mid)["version"] == 1
    left = store.leave_match(mid, "cat")
    assert left["version"] == 2 and left["ticket_id"] == c[0]
    cat = store.read_ticket(*c)
    assert (cat["status"], cat["reason"]) == ("finished", "left")
    assert team_players(store.match(mid)) == [["ann", "amy"], ["bob"]]
    backfill = store.create_backfill(mid, MODES["squad"], [Slot(1, 1)], 60)
    assert backfill["slots"] == [{"team": 1, "count": 1}]
    assert store.match(mid)["backfills"][0]["backfill_id"] == backfill["backfill_id"]
    assert store.stats()["queues"]["squad"]["backfills_open"] == 1
    dan = new_ticket(store, "dan", mode="squad", mmr=1520)
    fills, results = fill_from_queue(store)
    assert [f.ticket_id for f in fills] == [dan[0]] and results == [""]
    match = store.match(mid)
    assert team_players(match) == [["ann", "amy"], ["bob", "dan"]]
    assert match["version"] == 3 and match["backfills"] == []
    assert store.stats()["queues"]["squad"]["backfills_open"] == 0
    view = store.read_ticket(*dan)
    assignment = view["assignment"]
    assert view["status"] == "assigned" and assignment["match_id"] == mid
    assert assignment["server"] == match["server"] and assignment["teams"] == [["ann", "amy"], ["bob", "dan"]]
    digest = hashlib.sha256(assignment["join_token"].encode()).hexdigest()
    [entry] = [p for p in match["teams"][1]["players"] if p["player_id"] == "dan"]
    assert entry["join_token_sha256"] == digest
    assert store.heartbeat_server("x", "10.9.9.9:1") and redis_client.zcard(keys.queue("squad", None)) == 0
    assert store.stats()["queues"]["squad"]["assigned"] == 3  # ann's party, bob, dan
    check_invariants(redis_client)
    store.finish_match(mid)
    assert store.read_ticket(*dan)["status"] == "finished"
    check_invariants(redis_client)


def test_backfill_events_in_order(store, redis_client):
    mid, a, b, c = squad_match(store)
    store.leave_match(mid, "cat")
    after = EventLog(redis_client).last_id()
    backfill = store.create_backfill(mid, MODES["squad"], [Slot(1, 1)], 60)
    dan = new_ticket(store, "dan", mode="squad", mmr=1520)
    fill_from_queue(store)
    events = [(e["type"], e.get("ticket_id"), e["data"].get("backfill_id"))
              for e in EventLog(redis_client).read(after, limit=100).events]
    bid = backfill["backfill_id"]
    assert events == [("backfill.created", None, bid), ("ticket.queued", dan[0], None),
                      ("ticket.assigned", dan[0], bid), ("backfill.filled", None, bid)]


def test_a_full_team_refuses_a_backfill(store):
    mid, *_ = squad_match(store)
    with pytest.raises(Conflict, match="over-fill team 1"):
        store.create_backfill(mid, MODES["squad"], [Slot(1, 1)], 60)
    store.leave_match(mid, "bob")
    store.create_backfill(mid, MODES["squad"], [Slot(1, 1)], 60)
    # The open slot counts: a second backfill for the same place is refused.
    with pytest.raises(Conflict):
        store.create_backfill(mid, MODES["squad"], [Slot(1, 1)], 60)


def test_only_an_assigned_match_takes_backfills(store):
    with pytest.raises(NotFound):
        store.create_backfill("nope", MODES["squad"], [Slot(0, 1)], 60)
    mid, *_ = squad_match(store)
    store.finish_match(mid)
    with pytest.raises(Conflict, match="finished"):
        store.create_backfill(mid, MODES["squad"], [Slot(0, 1)], 60)


def test_cancel_is_idempotent_and_frees_the_place(store, redis_client):
    mid, *_ = squad_match(store)
    store.leave_match(mid, "bob")
    bid = store.create_backfill(mid, MODES["squad"], [Slot(1, 1)], 60)["backfill_id"]
    assert store.cancel_backfill(mid, bid)["state"] == "cancelled"
    assert store.cancel_backfill(mid, bid)["state"] == "cancelled"
    assert store.match(mid)["backfills"] == []
    new_ticket(store, "dan", mode="squad", mmr=1500)
    assert fill_from_queue(store) == ([], [])
    store.create_backfill(mid, MODES["squad"], [Slot(1, 1)], 60)  # the place is free again
    with pytest.raises(NotFound):
        store.cancel_backfill(mid, "unknown")
    check_invariants(redis_client)


def test_an_unfilled_backfill_expires(store, redis_client):
    mid, *_ = squad_match(store)
    store.leave_match(mid, "bob")
    bid = store.create_backfill(mid, MODES["squad"], [Slot(1, 1)], 0.05)["backfill_id"]
    time.sleep(0.1)
    assert store.process_deadlines(100).expired_backfills == 1
    assert store.cancel_backfill(mid, bid)["state"] == "expired"
    assert store.match(mid)["backfills"] == []
    assert redis_client.zcard(keys.BACKFILL_EXPIRY) == 0
    assert redis_client.zcard(keys.open_backfills("squad")) == 0
    types = [e["type"] for e in EventLog(redis_client).read(None, limit=1000).events]
    assert types[-1] == "backfill.expired"


def test_finishing_a_match_ends_its_backfills(store, redis_client):
    mid, *_ = squad_match(store)
    store.leave_match(mid, "bob")
    bid = store.create_backfill(mid, MODES["squad"], [Slot(1, 1)], 60)["backfill_id"]
    store.finish_match(mid)
    assert store.cancel_backfill(mid, bid) == {"backfill_id": bid, "match_id": mid, "state": "cancelled",
                                               "slots": [{"team": 1, "count": 1}], "reason": "match finished"}
    assert redis_client.zcard(keys.open_backfills("squad")) == 0
    assert redis_client.zcard(keys.BACKFILL_EXPIRY) == 0
    new_ticket(store, "dan", mode="squad", mmr=1500)
    assert fill_from_queue(store) == ([], [])
    types = [e["type"] for e in EventLog(redis_client).read(None, limit=1000).events]
    assert types.index("backfill.cancelled") < types.index("match.finished")


def test_a_party_member_leaving_keeps_the_ticket_until_the_last_one(store, redis_client):
    mid, a, b, c = squad_match(store)
    assert store.read_ticket(a[0], access=player_access("amy"))["assignment"]["join_token"]
    out = store.leave_match(mid, "amy")
    with pytest.raises(Forbidden):  # no longer its match: nor its join token
        store.read_ticket(a[0], access=player_access("amy"))
    assert store.read_ticket(a[0], access=player_access("ann"))["status"] == "assigned"
    assert out["ticket_id"] == a[0]
    ann = store.read_ticket(*a)
    assert ann["status"] == "assigned" and ann["assignment"]["teams"] == [["ann"], ["bob", "cat"]]
    assert team_players(store.match(mid)) == [["ann"], ["bob", "cat"]]
    assert redis_client.hget(keys.players("amy"), "amy") is None  # free to queue again
    check_invariants(redis_client)
    new_ticket(store, "amy", mode="duel")
    assert store.leave_match(mid, "amy")["state"] == "left"  # idempotent
    store.leave_match(mid, "ann")
    ann = store.read_ticket(*a)
    assert (ann["status"], ann["reason"]) == ("finished", "left")
    assert store.stats()["queues"]["squad"]["assigned"] == 2
    check_invariants(redis_client)
    with pytest.raises(NotFound):
        store.leave_match(mid, "zed")
    with pytest.raises(NotFound):
        store.leave_match("nope", "ann")


def test_a_fill_rechecks_everything(store, redis_client):
    mid, a, b, c = squad_match(store)
    store.leave_match(mid, "bob")
    bid = store.create_backfill(mid, MODES["squad"], [Slot(1, 1)], 60)["backfill_id"]
    dan = new_ticket(store, "dan", mode="squad", mmr=1500)
    eve = new_ticket(store, "eve", mode="squad", mmr=1500)
    store.read_queue("squad", None)
    # Two fills for one slot: the second finds it taken.
    results = store.fill_backfills("squad", None, 2, [Fill(bid, mid, dan[0], 1), Fill(bid, mid, eve[0], 1)])
    assert results == ["", "backfill"]
    # A ticket cancelled after the read is not filled.
    store.leave_match(mid, "cat")
    bid2 = store.create_backfill(mid, MODES["squad"], [Slot(1, 1)], 60)["backfill_id"]
    store.cancel_ticket(*eve)
    assert store.fill_backfills("squad", None, 2, [Fill(bid2, mid, eve[0], 1)]) == ["ticket"]
    # A ticket claimed into a new match meanwhile is not filled either.
    f = new_ticket(store, "fay", mode="squad", mmr=1500)
    g = new_ticket(store, "gus", mode="squad", mmr=1500)
    h = new_ticket(store, "hal", mode="squad", mmr=1500)
    i = new_ticket(store, "ida", mode="squad", mmr=1500)
    store.read_queue("squad", None)
    store.claim("squad", None, [((f[0], g[0]), (h[0], i[0]))], 0)
    assert store.fill_backfills("squad", None, 2, [Fill(bid2, mid, f[0], 1)]) == ["ticket"]
    # A party of two does not fit one place.
    j = new_ticket(store, "jon", mode="squad", mmr=1500, party=["joy"])
    store.read_queue("squad", None)
    assert store.fill_backfills("squad", None, 2, [Fill(bid2, mid, j[0], 1)]) == ["slots"]
    check_invariants(redis_client)
    assert store.read_ticket(*j)["status"] == "queued"


def test_heartbeat_tells_the_server_its_roster_version(redis_client):
    store = Store(redis_client, MODES, ServersConfig(), retention_s=60)
    store.heartbeat_server("gs1", "10.1.1.1:7000")
    a = new_ticket(store, "ann", mode="duel")
    b = new_ticket(store, "bob", mode="duel")
    result, = store.claim("duel", None, [((a[0],), (b[0],))], 0)
    store.allocate(10)
    beat = store.heartbeat_server("gs1", "10.1.1.1:7000")
    assert (beat["match_id"], beat["match_version"]) == (result.session_id, 1)
    store.leave_match(result.session_id, "bob")
    assert store.heartbeat_server("gs1", "10.1.1.1:7000")["match_version"] == 2
    store.finish_match(result.session_id)
    assert "match_version" not in store.heartbeat_server("gs1", "10.1.1.1:7000")


def test_a_backfill_racing_a_new_match_for_the_same_ticket(redis_server, redis_client):
    """Two replicas (two Stores, two connections) at the same instant: one fills a backfill
    with a ticket, the other claims the same ticket into a new match. One wins, whole."""
    import threading

    servers = ServersConfig(static=tuple(f"10.0.1.{n}:7777" for n in range(1, 100)))
    replica_a = Store(redis_server.client(decode_responses=True), MODES, servers, retention_s=60)
    replica_b = Store(redis_server.client(decode_responses=True), MODES, servers, retention_s=60)
    wins = Counter()
    for n in range(30):
        four = [new_ticket(replica_a, f"{p}{n}", mode="squad", mmr=1500)[0] for p in "abcd"]
        replica_a.read_queue("squad", None)
        [match] = replica_a.claim("squad", None, [(tuple(four[:2]), tuple(four[2:]))], 0)
        replica_a.allocate(100)
        mid = match.session_id
        replica_a.leave_match(mid, f"d{n}")
        bid = replica_a.create_backfill(mid, MODES["squad"], [Slot(1, 1)], 60)["backfill_id"]
        contested = new_ticket(replica_a, f"x{n}", mode="squad", mmr=1500)
        others = [new_ticket(replica_a, f"{p}{n}", mode="squad", mmr=1500)[0] for p in "efg"]
        replica_a.read_queue("squad", None)
        replica_b.read_queue("squad", None)
        barrier = threading.Barrier(2)
        answers = {}

        def fill():
            barrier.wait()
            answers["fill"] = replica_a.fill_backfills("squad", None, 2, [Fill(bid, mid, contested[0], 1)])

        def claim():
            barrier.wait()
            answers["claim"] = replica_b.claim("squad", None, [((contested[0], others[0]), (others[1], others[2]))], 0)

        threads = [threading.Thread(target=fill), threading.Thread(target=claim)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        filled = answers["fill"] == [""]
        claimed = answers["claim"][0].session_id is not None
        assert filled != claimed, answers  # exactly one wins
        wins["fill" if filled else "claim"] += 1
        view = replica_a.read_ticket(*contested)
        assert view["status"] == ("assigned" if filled else "matched")
        if filled:
            assert view["assignment"]["match_id"] == mid
        check_invariants(redis_client, {"squad": 2})
    assert sum(wins.values()) == 30
    print("race wins:", dict(wins))  # which script Redis ran first is its business


def test_backfill_churn_and_leaves_stay_bounded(redis_client):
    """A server that opens and cancels backfills without end, and a match that loses player
    after player, leave bounded state: ended backfills expire with the retention, a match keeps
    its last 64 leavers, open backfills never outnumber open places."""
    modes = {**MODES, "lobby": ModeConfig("lobby", team_size=80, teams=1, accept_timeout_s=0)}
    store = Store(redis_client, modes, ServersConfig(static=("10.0.0.5:7777",)), retention_s=1)
    ids = [new_ticket(store, f"p{i}", mode="lobby")[0] for i in range(80)]
    store.read_queue("lobby", None)
    [match] = store.claim("lobby", None, [(tuple(ids),)], 0)
    store.allocate(10)
    mid = match.session_id
    for i in range(70):
        store.leave_match(mid, f"p{i}")
    assert len(redis_client.hget(keys.session(mid), "lf").split(",")) == 64
    assert store.leave_match(mid, "p69")["state"] == "left"
    with pytest.raises(NotFound):
        store.leave_match(mid, "p0")  # forgotten: out of the last 64
    for _ in range(200):
        bid = store.create_backfill(mid, modes["lobby"], [Slot(0, 70)], 60)["backfill_id"]
        with pytest.raises(Conflict):
            store.create_backfill(mid, modes["lobby"], [Slot(0, 1)], 60)
        store.cancel_backfill(mid, bid)
    assert redis_client.zcard(keys.open_backfills("lobby")) == 0 and redis_client.zcard(keys.BACKFILL_EXPIRY) == 0
    assert redis_client.hget(keys.session(mid), "bf") is None
    assert all(0 < redis_client.ttl(k) <= 1 for k in redis_client.scan_iter(keys.BACKFILL_PREFIX + "*"))
    store.finish_match(mid)
    time.sleep(1.2)
    assert list(redis_client.scan_iter(keys.BACKFILL_PREFIX + "*")) == []
    check_invariants(redis_client, {"lobby": 80})
