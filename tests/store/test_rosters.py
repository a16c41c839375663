"""Rosters and join tokens, idempotent creation, and the operator's player calls, against the
real redis-server."""
import hashlib
import time

import pytest

from mmserver.config import ModeConfig, ServersConfig
from mmserver.store import NotFound, PlayerBusy, Store, keys
from mmserver.store.tickets import BACKEND_ACCESS, player_access
from tests.store.conftest import new_ticket

MODES = {"duel": ModeConfig("duel", accept_timeout_s=0),
         "squad": ModeConfig("squad", team_size=2, teams=2, accept_timeout_s=0)}


@pytest.fixture
def store(redis_client):
    return Store(redis_client, MODES, ServersConfig(static=("10.0.0.5:7777",)), retention_s=60)


def _squad_match(store):
    a = new_ticket(store, "ann", mode="squad", mmr=1500, party=["amy"])
    b = new_ticket(store, "bob", mode="squad", mmr=1510)
    c = new_ticket(store, "cat", mode="squad", mmr=1490)
    result, = store.claim("squad", None, [((a[0],), (b[0], c[0]))], 0)
    assert store.allocate(10) == (1, 0)
    return result.session_id, a, b, c


def test_the_roster_names_teams_players_and_join_token_digests(store):
    match_id, a, b, c = _squad_match(store)
    match = store.match(match_id)
    assert (match["state"], match["mode"], match["server"], match["region"]) == (
        "assigned", "squad", "10.0.0.5:7777", None)
    assert [[p["player_id"] for p in team["players"]] for team in match["teams"]] == [
        ["ann", "amy"], ["bob", "cat"]]
    for pair in (a, b, c):
        view = store.read_ticket(*pair)
        assignment = view["assignment"]
        assert assignment["teams"] == [["ann", "amy"], ["bob", "cat"]]
        digest = hashlib.sha256(assignment["join_token"].encode()).hexdigest()
        entries = [p for t in match["teams"] for p in t["players"] if p["ticket_id"] == pair[0]]
        assert entries and all(p["join_token_sha256"] == digest for p in entries)
    tokens = {store.read_ticket(*pair)["assignment"]["join_token"] for pair in (a, b, c)}
    assert len(tokens) == 3  # one per ticket
    assert match["teams"][0]["players"][0]["mmr"] == 1500


def test_a_finished_ticket_no_longer_shows_its_join_token(store):
    match_id, a, _b, _c = _squad_match(store)
    store.finish_match(match_id)
    view = store.read_ticket(*a)
    assert view["status"] == "finished" and "join_token" not in view["assignment"]
    assert store.match(match_id)["state"] == "finished"


def test_an_unknown_match_is_not_found(store):
    with pytest.raises(NotFound):
        store.match("nope")


def test_a_loading_session_is_readable_before_it_has_a_server(redis_client):
    store = Store(redis_client, MODES, ServersConfig(), retention_s=60)
    a, b = new_ticket(store, "a"), new_ticket(store, "b")
    result, = store.claim("duel", None, [((a[0],), (b[0],))], 0)
    match = store.match(result.session_id)
    assert match["state"] == "allocating" and match["server"] is None and match["created_at"] is None
    assert [len(t["players"]) for t in match["teams"]] == [1, 1]
    assert all(p["join_token_sha256"] is None for t in match["teams"] for p in t["players"])


def test_the_same_idempotency_key_answers_the_same_ticket_and_token(store, redis_client):
    first, token = store.create_ticket(player_id="p", mode="duel", mmr=1500, region=None, party=[],
                                       idempotency_key="k-1")
    again, token_again = store.create_ticket(player_id="p", mode="duel", mmr=1500, region=None,
                                             party=[], idempotency_key="k-1")
    assert again["ticket_id"] == first["ticket_id"] and token_again == token
    assert store.read_ticket(first["ticket_id"], token_again)["status"] == "queued"
    # Redis holds neither the key nor the token
    dump = str({k: redis_client.dump(k) for k in redis_client.keys("mm:ik:*")})
    assert "k-1" not in dump and token not in dump
    # another key for the same player is a new create: 409 while the first is live
    with pytest.raises(PlayerBusy):
        store.create_ticket(player_id="p", mode="duel", mmr=1500, region=None, party=[],
                            idempotency_key="k-2")
    # the same key for another player is another slot
    other, _ = store.create_ticket(player_id="q", mode="duel", mmr=1500, region=None, party=[],
                                   idempotency_key="k-1")
    assert other["ticket_id"] != first["ticket_id"]
    assert 0 < redis_client.pttl(next(iter(redis_client.keys("mm:ik:*")))) <= 300_000


def test_backend_and_player_access(store):
    ticket, _token = new_ticket(store, "ann", mode="squad", party=["amy"])
    assert store.read_ticket(ticket, access=BACKEND_ACCESS)["ticket_id"] == ticket
    assert store.read_ticket(ticket, access=player_access("amy"))["player_id"] == "ann"
    from mmserver.store import Forbidden
    with pytest.raises(Forbidden):
        store.read_ticket(ticket, access=player_access("bob"))
    assert store.cancel_ticket(ticket, access=player_access("amy"))["status"] == "cancelled"


def test_the_operator_looks_up_and_releases_a_queued_player(store):
    ticket, token = new_ticket(store, "ann")
    assert store.player("ann")["ticket"]["ticket_id"] == ticket
    released = store.release_player("ann")
    assert released["ticket"]["status"] == "cancelled"
    assert released["ticket"]["reason"] == "released by operator"
    with pytest.raises(NotFound):
        store.player("ann")
    with pytest.raises(NotFound):
        store.release_player("ann")
    new_ticket(store, "ann")  # free to queue again


def test_releasing_a_matched_player_sends_the_others_back_to_the_queue(redis_client):
    store = Store(redis_client, MODES, ServersConfig(), retention_s=60)
    a, b = new_ticket(store, "a"), new_ticket(store, "b")
    store.claim("duel", None, [((a[0],), (b[0],))], 0)
    assert store.release_player("a")["ticket"]["status"] == "cancelled"
    assert store.read_ticket(*b)["status"] == "queued"


def test_releasing_a_player_in_a_match_takes_it_off_the_roster(store, redis_client):
    match_id, a, b, c = _squad_match(store)
    released = store.release_player("cat")["ticket"]
    assert (released["status"], released["reason"]) == ("finished", "released by operator")
    match = store.match(match_id)
    assert [[p["player_id"] for p in t["players"]] for t in match["teams"]] == [["ann", "amy"], ["bob"]]
    assert store.read_ticket(*b)["assignment"]["teams"] == [["ann", "amy"], ["bob"]]
    assert store.stats()["queues"]["squad"]["assigned"] == 2  # tickets
    new_ticket(store, "cat", mode="squad")  # free to queue again
    store.release_player("bob")
    assert [len(t["players"]) for t in store.match(match_id)["teams"]] == [2, 0]
    store.finish_match(match_id)
    assert store.stats()["queues"]["squad"]["assigned"] == 0


def test_releasing_one_member_of_a_party_in_a_match_leaves_the_rest_playing(store, redis_client):
    """As when the game server reports the member gone (leave): the party's ticket plays on
    without it, and every ticket of the match is named on the views channel, so the replicas'
    cached views of the others' assignments do not keep the old roster."""
    match_id, a, b, c = _squad_match(store)
    views = redis_client.pubsub(ignore_subscribe_messages=True)
    views.subscribe(keys.VIEWS_CHANNEL)
    released = store.release_player("amy")["ticket"]
    assert released["ticket_id"] == a[0] and released["status"] == "assigned"
    assert store.read_ticket(*a)["assignment"]["teams"] == [["ann"], ["bob", "cat"]]
    assert store.read_ticket(*b)["assignment"]["teams"] == [["ann"], ["bob", "cat"]]
    assert store.player("ann")["ticket"]["status"] == "assigned"
    with pytest.raises(NotFound):
        store.player("amy")  # out of the match and free to queue again
    new_ticket(store, "amy", mode="duel")
    named: set[str] = set()
    deadline = time.monotonic() + 5
    while not {a[0], b[0], c[0]} <= named and time.monotonic() < deadline:
        message = views.get_message(timeout=0.5)  # None for the subscription's confirmation too
        if message is not None:
            named.update(message["data"].split(","))
    assert {a[0], b[0], c[0]} <= named
    views.close()
    assert store.release_player("ann")["ticket"]["status"] == "finished"  # its last player
    assert store.stats()["queues"]["squad"]["assigned"] == 2
