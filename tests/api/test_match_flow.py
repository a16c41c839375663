"""The ready check and the end of a match over HTTP: accept, decline, assignment, finish.

Matching itself belongs to the tick; here the store's tick methods (claim, allocate) stand in for
it, so the HTTP success paths can be exercised on real sessions.
"""
from __future__ import annotations

from tests.api.conftest import SERVER_TOKEN, bearer, create_ticket

SERVER_AUTH = bearer(SERVER_TOKEN)


def matched_pair(client, store):
    """Two duel tickets claimed into one loading session (as the tick would)."""
    first, first_auth = create_ticket(client, player_id="p1", mmr=1500)
    second, second_auth = create_ticket(client, player_id="p2", mmr=1510)
    [claimed] = store.claim("duel", None, [[[first["ticket_id"]], [second["ticket_id"]]]], 10.0)
    assert claimed.session_id, claimed
    return (first, first_auth), (second, second_auth)


def read(client, ticket, auth):
    result = client.simulate_get(f"/v1/tickets/{ticket['ticket_id']}", headers=auth)
    assert result.status_code == 200
    return result.json


def test_accept_by_everyone_then_assignment_then_finish(client, store):
    (first, first_auth), (second, second_auth) = matched_pair(client, store)
    view = read(client, first, first_auth)
    assert view["status"] == "matched"
    assert view["session"]["state"] == "accepting" and view["session"]["accepted"] is False

    accepted = client.simulate_post(f"/v1/tickets/{first['ticket_id']}/accept", headers=first_auth)
    assert accepted.status_code == 200
    assert accepted.json["session"]["accepted"] is True
    assert accepted.json["version"] > view["version"]
    assert client.simulate_post(f"/v1/tickets/{second['ticket_id']}/accept",
                                headers=second_auth).status_code == 200

    server = client.simulate_put("/v1/servers/gs-1", json={"address": "10.0.0.5:7777"}, headers=SERVER_AUTH)
    assert server.status_code == 200
    allocated, _waiting = store.allocate(10)
    assert allocated == 1
    assigned = read(client, first, first_auth)
    assert assigned["status"] == "assigned"
    assert assigned["assignment"]["server"] == "10.0.0.5:7777"
    assert sorted(assigned["assignment"]["players"]) == ["p1", "p2"]
    busy = client.simulate_put("/v1/servers/gs-1", json={"address": "10.0.0.5:7777"}, headers=SERVER_AUTH)
    assert busy.json["state"] == "busy"
    assert busy.json["match_id"] == assigned["assignment"]["match_id"]

    # An assigned ticket cannot be cancelled any more.
    assert client.simulate_delete(f"/v1/tickets/{first['ticket_id']}", headers=first_auth).status_code == 409

    match_id = assigned["assignment"]["match_id"]
    finished = client.simulate_post(f"/v1/matches/{match_id}/finish", headers=SERVER_AUTH)
    assert finished.status_code == 200
    assert finished.json["match_id"] == match_id
    assert finished.json["status"] == "finished"
    assert sorted(finished.json["players"]) == ["p1", "p2"]
    again = client.simulate_post(f"/v1/matches/{match_id}/finish", headers=SERVER_AUTH)
    assert again.status_code == 200  # idempotent
    assert read(client, second, second_auth)["status"] == "finished"
    freed = client.simulate_put("/v1/servers/gs-1", json={"address": "10.0.0.5:7777"}, headers=SERVER_AUTH)
    assert freed.json["state"] == "free"


def test_decline_cancels_the_decliner_and_requeues_the_other(client, store):
    (first, first_auth), (second, second_auth) = matched_pair(client, store)
    declined = client.simulate_post(f"/v1/tickets/{first['ticket_id']}/decline", headers=first_auth)
    assert declined.status_code == 200
    assert declined.json["status"] == "cancelled"
    assert declined.json["reason"]
    other = read(client, second, second_auth)
    assert other["status"] == "queued"
    assert other["enqueued_at"] == second["enqueued_at"]  # keeps its place
    # Accepting a session that is gone is a conflict, not a success.
    assert client.simulate_post(f"/v1/tickets/{second['ticket_id']}/accept",
                                headers=second_auth).status_code == 409


def test_cancel_while_matched(client, store):
    (first, first_auth), (second, second_auth) = matched_pair(client, store)
    cancelled = client.simulate_delete(f"/v1/tickets/{first['ticket_id']}", headers=first_auth)
    assert cancelled.status_code == 200
    assert cancelled.json["status"] == "cancelled"
    assert read(client, second, second_auth)["status"] == "queued"


def test_finishing_a_match_still_loading_is_409_and_changes_nothing(client, store):
    # A loading session has a match id (the admin API and the tickets show it) but no server:
    # finishing it is refused as such, not as an unknown match, in its ready check and while
    # it waits for a server.
    (first, first_auth), (second, second_auth) = matched_pair(client, store)
    match_id = read(client, first, first_auth)["session"]["session_id"]
    for state in ("accepting", "allocating"):
        before = [read(client, ticket, auth) for ticket, auth in ((first, first_auth), (second, second_auth))]
        assert before[0]["session"]["state"] == state
        refused = client.simulate_post(f"/v1/matches/{match_id}/finish", headers=SERVER_AUTH)
        assert refused.status_code == 409, refused.text
        assert state in refused.json["description"] and "not running" in refused.json["description"]
        after = [read(client, ticket, auth) for ticket, auth in ((first, first_auth), (second, second_auth))]
        assert after == before
        for ticket, auth in ((first, first_auth), (second, second_auth)):
            assert client.simulate_post(f"/v1/tickets/{ticket['ticket_id']}/accept", headers=auth).status_code == 200
    # No server registered: the session waits in allocating until one comes.
    server = client.simulate_put("/v1/servers/gs-1", json={"address": "10.0.0.5:7777"}, headers=SERVER_AUTH)
    assert server.status_code == 200
    assert store.allocate(10)[0] == 1
    assert client.simulate_post(f"/v1/matches/{match_id}/finish", headers=SERVER_AUTH).status_code == 200
