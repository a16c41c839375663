"""A ticket out of the queue is one string record (keys.py, `mm:t:`), and a ticket still held
as a hash (the layout before it) is read as it is and becomes a record at its next write."""
import secrets

from mmserver.config import ModeConfig, ServersConfig
from mmserver.store import keys
from tests.store.conftest import new_ticket
from tests.store.invariants import check_invariants


def _assigned(make_store):
    store = make_store({"duel": ModeConfig("duel", accept_timeout_s=0)}, ServersConfig(static=("10.0.0.5:7777",)))
    a, b = new_ticket(store, "a"), new_ticket(store, "b")
    result, = store.claim("duel", None, [((a[0],), (b[0],))], 0)
    assert store.allocate(10) == (1, 0)
    return store, a, b, result.session_id


def test_an_assigned_ticket_is_one_record_with_its_join_token(make_store, redis_client):
    store, (a, ta), _b, sid = _assigned(make_store)
    assert redis_client.type(keys.ticket(a)) == "string"
    stored = keys.unpack_ticket(redis_client.get(keys.ticket(a)))
    view = store.read_ticket(a, ta)
    assert stored["s"] == "assigned" and stored["x"] == sid and stored["p"] == "a"
    assert stored["j"] == view["assignment"]["join_token"] and int(stored["v"]) == view["version"]
    assert keys.pack_ticket(stored) == redis_client.get(keys.ticket(a))
    check_invariants(redis_client)


def test_a_reason_holding_the_separator_is_kept_whole(make_store, redis_client):
    store, (a, ta), _b, sid = _assigned(make_store)
    store.finish_match(sid, reason="crashed | restarted")
    assert store.read_ticket(a, ta)["reason"] == "crashed | restarted"
    assert keys.unpack_ticket(redis_client.get(keys.ticket(a)))["w"] == "crashed | restarted"
    assert 0 < redis_client.ttl(keys.ticket(a)) <= 60


def test_a_ticket_stored_as_a_hash_is_read_and_moved_on(make_store, redis_client):
    store, (a, ta), (b, tb), sid = _assigned(make_store)
    for ticket in (a, b):
        fields = keys.unpack_ticket(redis_client.get(keys.ticket(ticket)))
        redis_client.delete(keys.ticket(ticket))
        redis_client.hset(keys.ticket(ticket), mapping=fields)  # as the layout before wrote it
    view = store.read_ticket(a, ta)
    assert view["status"] == "assigned" and view["assignment"]["match_id"] == sid
    assert store.player("b")["ticket"]["ticket_id"] == b
    store.finish_match(sid)
    for ticket, token in ((a, ta), (b, tb)):
        assert redis_client.type(keys.ticket(ticket)) == "string"
        assert store.read_ticket(ticket, token)["status"] == "finished"
    new_ticket(store, "a")  # the player index was released
    check_invariants(redis_client)


def test_an_id_already_taken_queued_or_not_is_never_overwritten(store, redis_client, monkeypatch):
    from mmserver.store import tickets
    first, _ = new_ticket(store, "p1")
    before = redis_client.hget(keys.queued_tickets(first), first)
    # The first attempt's id comes with the token, a retry's on its own.
    monkeypatch.setattr(tickets, "new_id_and_token", lambda: (first, secrets.token_urlsafe(24)))
    monkeypatch.setattr(tickets, "new_id", lambda: "fresh-id-1")
    second, _ = new_ticket(store, "p2")  # the queued id is refused, the next one taken
    assert second == "fresh-id-1"
    assert redis_client.hget(keys.queued_tickets(first), first) == before
    assert redis_client.hget(keys.players("p2"), "p2") == second
    redis_client.set(keys.ticket("taken-id"), keys.pack_ticket({"s": "cancelled", "v": "2", "w": "x"}))
    monkeypatch.setattr(tickets, "new_id_and_token", lambda: ("taken-id", secrets.token_urlsafe(24)))
    monkeypatch.setattr(tickets, "new_id", lambda: "fresh-id-2")
    assert new_ticket(store, "p3")[0] == "fresh-id-2"
    assert not redis_client.hexists(keys.queued_tickets("taken-id"), "taken-id")
