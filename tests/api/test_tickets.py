"""Tickets over HTTP on a real Store: success paths and every refusal, each a JSON error."""
from __future__ import annotations

from tests.api.conftest import bearer, create_ticket


def test_create_answers_201_with_view_token_and_location(client):
    result = client.simulate_post("/v1/tickets", json={
        "player_id": "p1", "mode": "squad", "mmr": 1234.5, "region": "eu", "party": ["p2", "p3"]})
    assert result.status_code == 201
    body = result.json
    assert body["status"] == "queued"
    assert body["player_id"] == "p1" and body["mode"] == "squad"
    assert body["party"] == ["p2", "p3"] and body["region"] == "eu"
    assert body["mmr"] == 1234.5
    assert isinstance(body["version"], int)
    assert body["token"]
    assert result.headers["location"] == f"/v1/tickets/{body['ticket_id']}"


def test_read_answers_the_view_without_the_token(client):
    created, auth = create_ticket(client, region=None)
    result = client.simulate_get(f"/v1/tickets/{created['ticket_id']}", headers=auth)
    assert result.status_code == 200
    assert result.json["ticket_id"] == created["ticket_id"]
    assert result.json["status"] == "queued"
    assert result.json["version"] == created["version"]
    assert "token" not in result.json


def test_trailing_slash_is_the_same_resource(client):
    created, auth = create_ticket(client)
    assert client.simulate_get(f"/v1/tickets/{created['ticket_id']}/", headers=auth).status_code == 200


def test_player_with_a_live_ticket_gets_409_naming_it(client):
    created, _ = create_ticket(client, player_id="p1")
    result = client.simulate_post("/v1/tickets", json={"player_id": "p1", "mode": "duel", "mmr": 10})
    assert result.status_code == 409
    assert result.json["ticket_id"] == created["ticket_id"]
    assert created["ticket_id"] in result.json["description"]


def test_party_member_with_a_live_ticket_gets_409(client):
    created, _ = create_ticket(client, player_id="p2", mode="squad")
    result = client.simulate_post("/v1/tickets", json={
        "player_id": "p1", "mode": "squad", "mmr": 10, "party": ["p2"]})
    assert result.status_code == 409
    assert created["ticket_id"] in result.json["description"]


def test_cancel_is_idempotent_and_frees_the_player(client):
    created, auth = create_ticket(client)
    path = f"/v1/tickets/{created['ticket_id']}"
    first = client.simulate_delete(path, headers=auth)
    assert first.status_code == 200
    assert first.json["status"] == "cancelled"
    assert first.json["reason"]
    assert first.json["version"] > created["version"]
    again = client.simulate_delete(path, headers=auth)
    assert again.status_code == 200 and again.json["status"] == "cancelled"
    assert client.simulate_get(path, headers=auth).json["status"] == "cancelled"
    create_ticket(client, player_id="p1")  # no longer busy


def test_accept_and_decline_on_a_queued_ticket_are_409(client):
    created, auth = create_ticket(client)
    for action in ("accept", "decline"):
        result = client.simulate_post(f"/v1/tickets/{created['ticket_id']}/{action}", headers=auth)
        assert result.status_code == 409, action
    assert client.simulate_get(f"/v1/tickets/{created['ticket_id']}", headers=auth).json["status"] == "queued"


def test_missing_token_is_401_with_a_bearer_challenge(client):
    created, _ = create_ticket(client)
    path = f"/v1/tickets/{created['ticket_id']}"
    for method, target in [("GET", path), ("DELETE", path), ("POST", path + "/accept"),
                           ("POST", path + "/decline")]:
        result = client.simulate_request(method, target)
        assert result.status_code == 401, (method, target)
        assert result.headers["www-authenticate"].startswith("Bearer")
    basic = client.simulate_get(path, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401


def test_another_tickets_token_is_403(client):
    first, _ = create_ticket(client, player_id="p1")
    _, other_auth = create_ticket(client, player_id="p2")
    path = f"/v1/tickets/{first['ticket_id']}"
    assert client.simulate_get(path, headers=other_auth).status_code == 403
    assert client.simulate_delete(path, headers=other_auth).status_code == 403
    assert client.simulate_post(path + "/accept", headers=other_auth).status_code == 403
    assert client.simulate_get(path, headers=bearer("not-a-token")).status_code == 403


def test_unknown_ticket_is_404(client):
    auth = bearer("whatever")
    assert client.simulate_get("/v1/tickets/AAAAAAAAAAAAAAAAAAAAAA", headers=auth).status_code == 404
    assert client.simulate_delete("/v1/tickets/AAAAAAAAAAAAAAAAAAAAAA", headers=auth).status_code == 404
    # An id the store could never have generated.
    assert client.simulate_get("/v1/tickets/not.an:id", headers=auth).status_code == 404


def test_bad_fields_are_400(client):
    for body in [
        {"player_id": "p1", "mode": "duel"},
        {"player_id": "p1", "mode": "duel", "mmr": "high"},
        {"player_id": "p1", "mode": "duel", "mmr": 1, "colour": "red"},
        {"player_id": "bad id", "mode": "duel", "mmr": 1},
        {"player_id": "p1", "mode": "duel", "mmr": 1, "party": "p2"},
        [1, 2],
    ]:
        result = client.simulate_post("/v1/tickets", json=body)
        assert result.status_code == 400, body


def test_rule_breaking_tickets_are_422(client):
    for body in [
        {"player_id": "p1", "mode": "ranked", "mmr": 1},
        {"player_id": "p1", "mode": "duel", "mmr": -5},
        {"player_id": "p1", "mode": "duel", "mmr": 100001},
        {"player_id": "p1", "mode": "duel", "mmr": 1, "party": ["p2"]},
        {"player_id": "p1", "mode": "squad", "mmr": 1, "party": ["p2", "p3", "p4"]},
        {"player_id": "p1", "mode": "squad", "mmr": 1, "party": ["p1"]},
        {"player_id": "p1", "mode": "squad", "mmr": 1, "party": ["p2", "p2"]},
    ]:
        result = client.simulate_post("/v1/tickets", json=body)
        assert result.status_code == 422, body
    # Nothing was created by any of them.
    create_ticket(client, player_id="p1")


def test_bad_poll_parameters_are_400(client):
    created, auth = create_ticket(client)
    path = f"/v1/tickets/{created['ticket_id']}"
    for query in ["wait=31", "wait=-1", "wait=soon", "version=x", "wait=1&version=-2", "wat=1"]:
        result = client.simulate_get(path, query_string=query, headers=auth)
        assert result.status_code == 400, query
