"""/healthz always answers; /readyz follows Readiness; draining refuses only new tickets."""
from __future__ import annotations

from mmserver.readiness import Readiness
from tests.api.conftest import create_ticket


def test_healthz_is_alive(client):
    result = client.simulate_get("/healthz")
    assert result.status_code == 200
    assert result.json == {"status": "alive"}


def test_readyz_ready(client):
    result = client.simulate_get("/readyz")
    assert result.status_code == 200
    assert result.json == {"status": "ready"}


def test_readyz_names_what_is_missing(client, readiness: Readiness):
    readiness.set_redis_connected(False)
    result = client.simulate_get("/readyz")
    assert result.status_code == 503
    assert result.json["status"] == "redis unreachable"
    assert int(result.headers["retry-after"]) > 0
    readiness.set_redis_connected(True)
    readiness.drain()
    result = client.simulate_get("/readyz")
    assert result.status_code == 503 and result.json["status"] == "draining"
    assert client.simulate_get("/healthz").status_code == 200


def test_draining_refuses_new_tickets_and_serves_the_rest(client, readiness):
    ticket, auth = create_ticket(client, player_id="p1")
    readiness.drain()
    refused = client.simulate_post("/v1/tickets", json={"player_id": "p2", "mode": "duel", "mmr": 1})
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) > 0
    path = f"/v1/tickets/{ticket['ticket_id']}"
    assert client.simulate_get(path, headers=auth).status_code == 200
    assert client.simulate_delete(path, headers=auth).json["status"] == "cancelled"
