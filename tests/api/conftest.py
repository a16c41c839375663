"""The public app on a real Store and the real redis-server.

`client` checks every answer it sees against the OpenAPI document: a status the tests observe
on an operation must be documented for that operation.
"""
from __future__ import annotations

import json
import re
from typing import Any

import falcon.testing
import pytest

from mmserver.config import Config, ModeConfig, ServersConfig
from mmserver.http.app import create_public_app, load_openapi_bytes
from mmserver.http.waiters import Waiters
from mmserver.readiness import Readiness
from mmserver.store import Store

SERVER_TOKEN = "server-secret"
REGIONS = ("eu", "us")
MODES = {
    "duel": ModeConfig(name="duel"),
    "squad": ModeConfig(name="squad", team_size=3, teams=2),
}


def openapi() -> dict[str, Any]:
    return json.loads(load_openapi_bytes())


def _template_pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")


class DocumentedClient(falcon.testing.TestClient):
    """A TestClient that fails the test when a status is missing from the document."""

    def __init__(self, app: falcon.App, document: dict[str, Any], observed: set) -> None:
        super().__init__(app)
        self._operations = [
            (_template_pattern(template), template, item)
            for template, item in document["paths"].items()
        ]
        self.observed = observed

    def simulate_request(self, method: str = "GET", path: str = "/", *args: Any, **kwargs: Any):
        result = super().simulate_request(method, path, *args, **kwargs)
        if result.status_code >= 400:
            assert result.headers.get("content-type", "").startswith("application/json"), result.text
            body = result.json
            assert isinstance(body.get("title"), str) and body["title"], body
            assert isinstance(body.get("description"), str) and body["description"], body
            assert "Traceback" not in result.text
        for pattern, template, item in self._operations:
            if pattern.match(path.split("?")[0]):
                operation = item.get(method.lower())
                if operation is None:
                    break  # 405 territory: no operation to document it on
                responses = operation["responses"]
                assert str(result.status_code) in responses, (
                    f"{method} {template} answered {result.status_code}, not in the OpenAPI document")
                self.observed.add((method, template, result.status_code))
                break
        return result


@pytest.fixture(scope="session")
def observed_statuses() -> set:
    return set()


@pytest.fixture
def config() -> Config:
    return Config(modes=MODES, servers=ServersConfig(token=SERVER_TOKEN), regions=REGIONS, max_longpolls=4,
                  http_threads=8, max_body_bytes=8192)


@pytest.fixture
def store(redis_client, config) -> Store:
    return Store(redis_client, config.modes, config.servers, regions=config.regions)


@pytest.fixture
def waiters(config) -> Waiters:
    return Waiters(config.max_longpolls)


@pytest.fixture
def readiness() -> Readiness:
    readiness = Readiness()
    readiness.mark_started()
    readiness.set_redis_connected(True)
    return readiness


@pytest.fixture
def app(store, waiters, readiness, config) -> falcon.App:
    return create_public_app(store=store, waiters=waiters, readiness=readiness, config=config)


@pytest.fixture
def client(app, observed_statuses) -> DocumentedClient:
    return DocumentedClient(app, openapi(), observed_statuses)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_ticket(client: DocumentedClient, player_id: str = "p1", **fields: Any) -> tuple[dict, dict]:
    """POST a ticket; returns (body, auth headers)."""
    body = {"player_id": player_id, "mode": "duel", "mmr": 1500, **fields}
    result = client.simulate_post("/v1/tickets", json=body)
    assert result.status_code == 201, result.text
    return result.json, bearer(result.json["token"])
