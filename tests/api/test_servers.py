"""Dedicated-server endpoints: the server token, heartbeats, finishing matches."""
from __future__ import annotations

from mmserver.config import Config, ServersConfig
from mmserver.http.app import create_public_app
from tests.api.conftest import MODES, SERVER_TOKEN, DocumentedClient, bearer, openapi

AUTH = bearer(SERVER_TOKEN)


def test_heartbeat_registers_and_refreshes(client):
    first = client.simulate_put("/v1/servers/gs-1", json={"address": "10.0.0.5:7777"}, headers=AUTH)
    assert first.status_code == 200
    assert first.json["server_id"] == "gs-1"
    assert first.json["address"] == "10.0.0.5:7777"
    assert first.json["state"] == "free"
    again = client.simulate_put("/v1/servers/gs-1", json={"address": "10.0.0.5:7777"}, headers=AUTH)
    assert again.status_code == 200 and again.json["state"] == "free"


def test_one_address_is_one_server_however_it_is_spelt(client):
    """The registry compares addresses as text: each is kept in one spelling, or another
    spelling of a busy server's address would register it again, free for a second match."""
    first = client.simulate_put("/v1/servers/gs-1", json={"address": "HOST.Example.:07777"}, headers=AUTH)
    assert first.status_code == 200 and first.json["address"] == "host.example:7777"
    v6 = client.simulate_put("/v1/servers/gs-2", json={"address": "[0:0::1]:7777"}, headers=AUTH)
    assert v6.status_code == 200 and v6.json["address"] == "[::1]:7777"
    mapped = client.simulate_put("/v1/servers/gs-3", json={"address": "[::ffff:10.0.0.5]:80"}, headers=AUTH)
    assert mapped.status_code == 200 and mapped.json["address"] == "10.0.0.5:80"
    for other in ["host.example:7777", "HOST.EXAMPLE:7777", "host.example.:7777", "[::1]:07777",
                  "[0000::0001]:7777", "10.0.0.5:080"]:
        result = client.simulate_put("/v1/servers/gs-9", json={"address": other}, headers=AUTH)
        assert result.status_code == 409, (other, result.json)
        assert result.json["title"] == "Address in use"
    for ambiguous in ["10.0.0.05:7777", "10.5:7777", "256.0.0.1:7777", "a..b:7777", "[1::2::3]:7777"]:
        result = client.simulate_put("/v1/servers/gs-9", json={"address": ambiguous}, headers=AUTH)
        assert result.status_code == 422, (ambiguous, result.json)
        assert "address" in result.json["description"]


def test_server_token_missing_or_wrong_is_401(client):
    body = {"address": "10.0.0.5:7777"}
    for headers in [{}, bearer("wrong"), bearer(SERVER_TOKEN + "x"), {"Authorization": SERVER_TOKEN}]:
        result = client.simulate_put("/v1/servers/gs-1", json=body, headers=headers)
        assert result.status_code == 401, headers
        assert result.headers["www-authenticate"].startswith("Bearer")
        assert client.simulate_post("/v1/matches/AAAAAAAAAAAAAAAAAAAAAA/finish", headers=headers).status_code == 401


def test_a_ticket_token_is_not_a_server_token(client):
    created = client.simulate_post("/v1/tickets", json={"player_id": "p1", "mode": "duel", "mmr": 1})
    result = client.simulate_put("/v1/servers/gs-1", json={"address": "10.0.0.5:7777"},
                                 headers=bearer(created.json["token"]))
    assert result.status_code == 401


def test_without_a_configured_token_the_endpoints_are_403(store, waiters, readiness, observed_statuses):
    config = Config(modes=MODES, servers=ServersConfig(token=None))
    app = create_public_app(store=store, waiters=waiters, readiness=readiness, config=config)
    client = DocumentedClient(app, openapi(), observed_statuses)
    for headers in [{}, AUTH]:
        assert client.simulate_put("/v1/servers/gs-1", json={"address": "10.0.0.5:7777"},
                                   headers=headers).status_code == 403
        assert client.simulate_post("/v1/matches/AAAAAAAAAAAAAAAAAAAAAA/finish",
                                    headers=headers).status_code == 403


def test_bad_heartbeats(client):
    cases = [
        ({"address": "10.0.0.5"}, 400), ({"address": 7777}, 400), ({}, 400),
        ({"address": "10.0.0.5:7777", "region": "mars"}, 422),
        ({"address": "10.0.0.5:7777", "colour": "red"}, 400), ({"address": "10.0.0.5:70000"}, 422),
    ]
    for body, status in cases:
        assert client.simulate_put("/v1/servers/gs-1", json=body, headers=AUTH).status_code == status, body
    assert client.simulate_put("/v1/servers/bad id!", json={"address": "10.0.0.5:7777"},
                               headers=AUTH).status_code == 400
    assert client.simulate_put("/v1/servers/gs-1", body="address=x", headers={
        **AUTH, "Content-Type": "application/x-www-form-urlencoded"}).status_code == 415


def test_finishing_an_unknown_match_is_404(client):
    assert client.simulate_post("/v1/matches/AAAAAAAAAAAAAAAAAAAAAA/finish", headers=AUTH).status_code == 404
    assert client.simulate_post("/v1/matches/no.such:id/finish", headers=AUTH).status_code == 404


def test_token_comparison_tolerates_non_ascii(client):
    result = client.simulate_put("/v1/servers/gs-1", json={"address": "10.0.0.5:7777"},
                                 headers={"Authorization": "Bearer caf\u00e9"})
    assert result.status_code == 401
