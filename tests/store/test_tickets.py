import time

import pytest

from mmserver.config import ModeConfig
from mmserver.store import Conflict, Forbidden, NotFound, PlayerBusy
from mmserver.store import keys
from tests.store.conftest import new_ticket


def test_create_returns_queued_view_and_a_token_stored_only_as_a_hash(store, redis_client):
    view, token = store.create_ticket(player_id="p1", mode="duel", mmr=1500.5, region="eu", party=[])
    assert view["status"] == "queued" and view["version"] == 1
    assert view["player_id"] == "p1" and view["mmr"] == 1500.5 and view["region"] == "eu"
    assert view["party"] == [] and "token" not in view and "reason" not in view
    assert abs(view["enqueued_at"] - time.time()) < 5
    ticket_id = view["ticket_id"]
    # queued: one record in its bucket, no key of its own
    record = redis_client.hget(keys.queued_tickets(ticket_id), ticket_id)
    assert not redis_client.exists(keys.ticket(ticket_id))
    stored = keys.unpack_queued(record)
    assert stored["p"] == "p1" and stored["g"] == "eu" and stored["r"] == "1500.5"
    assert token not in record and stored["k"] and stored["k"] not in token
    assert redis_client.hget(keys.players("p1"), "p1") == ticket_id
    assert redis_client.zcard(keys.queue("duel", "eu")) == 1


def test_read_with_wrong_token_is_forbidden_and_unknown_ticket_not_found(store):
    ticket_id, token = new_ticket(store, "p1")
    assert store.read_ticket(ticket_id, token)["ticket_id"] == ticket_id
    with pytest.raises(Forbidden):
        store.read_ticket(ticket_id, token + "x")
    with pytest.raises(NotFound):
        store.read_ticket("nope", token)


def test_a_player_in_a_live_ticket_is_busy_including_party_members(make_store):
    store = make_store({"squad": ModeConfig("squad", team_size=3)})
    ticket_id, _ = new_ticket(store, "lead", mode="squad", party=["m1", "m2"])
    for player, party in (("lead", []), ("m1", []), ("x", ["m2"])):
        with pytest.raises(PlayerBusy) as caught:
            new_ticket(store, player, mode="squad", party=party)
        assert caught.value.ticket_id == ticket_id
        assert ticket_id in caught.value.description
    # nothing was written for the refused ticket: "x" is free
    new_ticket(store, "x", mode="squad")


def test_unknown_mode_and_oversized_party_conflict(store):
    with pytest.raises(Conflict):
        new_ticket(store, "p1", mode="nope")
    with pytest.raises(Conflict):
        new_ticket(store, "p1", party=["p2"])  # duel: team_size 1


def test_cancel_is_idempotent_and_releases_the_player(store, redis_client):
    ticket_id, token = new_ticket(store, "p1")
    view = store.cancel_ticket(ticket_id, token)
    assert view["status"] == "cancelled" and view["reason"] == "cancelled by client"
    assert view["version"] == 2
    again = store.cancel_ticket(ticket_id, token)
    assert again == view
    assert redis_client.zcard(keys.queue("duel", None)) == 0
    assert redis_client.hget(keys.players("p1"), "p1") is None
    assert not redis_client.hexists(keys.queued_tickets(ticket_id), ticket_id)
    # terminal: readable for the retention, then removed by Redis itself
    assert 0 < redis_client.ttl(keys.ticket(ticket_id)) <= 60
    assert store.read_ticket(ticket_id, token)["status"] == "cancelled"
    new_ticket(store, "p1")  # the player may queue again at once


def test_read_refreshes_the_ttl_deadline(make_store, redis_client):
    store = make_store({"duel": ModeConfig("duel", ticket_ttl_s=100)})
    ticket_id, token = new_ticket(store, "p1")
    queue = keys.queue("duel", None)
    (member, first), = redis_client.zrange(queue, 0, -1, withscores=True)
    time.sleep(0.02)
    store.read_ticket(ticket_id, token)
    (member_after, second), = redis_client.zrange(queue, 0, -1, withscores=True)
    assert member_after == member and second > first


def test_unread_ticket_expires_and_read_one_survives(make_store, redis_client):
    store = make_store({"duel": ModeConfig("duel", ticket_ttl_s=0.3)})
    idle, idle_token = new_ticket(store, "idle")
    alive, alive_token = new_ticket(store, "alive")
    for _ in range(4):
        time.sleep(0.1)
        store.read_ticket(alive, alive_token)
    counts = store.process_deadlines(100)
    assert counts.expired_tickets == 1
    view = store.read_ticket(idle, idle_token)
    assert view["status"] == "expired" and view["reason"] == "not polled for 0.3 s"
    assert store.read_ticket(alive, alive_token)["status"] == "queued"
    assert redis_client.hget(keys.players("idle"), "idle") is None
    assert redis_client.zcard(keys.queue("duel", None)) == 1
    # processing again (another replica, late) changes nothing
    assert store.process_deadlines(100).total == 0
    with pytest.raises(Conflict):
        store.cancel_ticket(idle, idle_token)


def test_queue_member_round_trips_mmr_spellings(store):
    for i, mmr in enumerate((0, 1500, 1500.25, 99999.5, 1e-05, 100000)):
        ticket_id, token = new_ticket(store, f"p{i}", mmr=mmr)
        assert store.read_ticket(ticket_id, token)["mmr"] == mmr
    assert sorted(t.mmr for t in store.read_queue("duel", None)) == [0, 1e-05, 1500, 1500.25, 99999.5, 100000]


def test_regions_are_separate_queues(store):
    new_ticket(store, "a", region="eu")
    new_ticket(store, "b", region="us")
    new_ticket(store, "c")
    assert store.regions("duel") == [None, "eu", "us"]
    assert [len(store.read_queue("duel", r)) for r in (None, "eu", "us")] == [1, 1, 1]


def test_separator_characters_are_refused(make_store):
    store = make_store({"squad": ModeConfig("squad", team_size=2)})
    for player, party, region in (("a,b", [], None), ("a", ["b|c"], None), ("a", [], "e;u")):
        with pytest.raises(Conflict):
            new_ticket(store, player, mode="squad", party=party, region=region)
    new_ticket(store, "a", mode="squad", party=["b"], region="eu")


def test_long_player_ids_and_parties_overflow_a_bucket_and_still_work(make_store, redis_client):
    # A record over 64 bytes turns its bucket into a hashtable (memory only): same behaviour.
    store = make_store({"team": ModeConfig("team", team_size=5, teams=2, accept_timeout_s=5)})
    long_ids = [f"{'x' * 60}-{n:03d}" for n in range(5)]
    ticket_id, token = new_ticket(store, long_ids[0], mode="team", mmr=1234.56789, party=long_ids[1:])
    assert redis_client.object("encoding", keys.queued_tickets(ticket_id)) == "hashtable"
    view = store.read_ticket(ticket_id, token)
    assert view["status"] == "queued" and view["party"] == long_ids[1:] and view["mmr"] == 1234.56789
    with pytest.raises(PlayerBusy):
        new_ticket(store, long_ids[3], mode="team")
    assert store.cancel_ticket(ticket_id, token)["status"] == "cancelled"
    for player in long_ids:
        assert redis_client.hget(keys.players(player), player) is None
    new_ticket(store, long_ids[3], mode="team")


def test_generated_ids_never_start_with_a_dash():
    """An id starting with '-' reads as an option on a command line (mmadmin match ID)."""
    from mmserver.store.tickets import new_id, new_id_and_token, new_ids

    pairs = [new_id_and_token() for _ in range(5000)]
    ids = [new_id() for _ in range(5000)] + new_ids(5000) + [i for i, _ in pairs]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 16 for i in ids)
    # Without the fold, about one in 64 would: the sample is large enough to have seen some.
    assert sum(i.startswith("_") for i in ids) > 75
    # A token drawn with its id: 32 URL-safe characters (24 bytes), unrelated to the ids.
    tokens = [t for _, t in pairs]
    assert all(len(t) == 32 and t.replace("-", "").replace("_", "").isalnum() for t in tokens)
    assert len(set(tokens)) == len(tokens) and not set(tokens) & set(ids)
