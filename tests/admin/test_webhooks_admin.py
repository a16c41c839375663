"""The dead-letter routes of the control plane through falcon.testing: what reaches the
Control, and every bad request answered 4xx with the JSON error body (never a 500)."""
from __future__ import annotations

import json

import falcon.testing
import pytest

from mmserver.store import RedisUnavailable
from mmserver_admin.app import create_admin_app
from mmserver_admin.resources import WebhooksNotConfigured
from tests.admin.controls import TOKEN, RecordingControl, metrics
from tests.admin.test_app import assert_json_error

AUTH = {"Authorization": f"Bearer {TOKEN}"}
ID = "1718000000000-0"


def client_for(control: RecordingControl) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_admin_app(control, token=TOKEN, metrics=metrics, max_body_bytes=1024))


@pytest.fixture
def control() -> RecordingControl:
    return RecordingControl()


@pytest.fixture
def client(control) -> falcon.testing.TestClient:
    return client_for(control)


def test_list_replay_and_discard_reach_the_control(client, control):
    assert client.simulate_get("/admin/webhooks/dead", headers=AUTH).json["total"] == 0
    client.simulate_get("/admin/webhooks/dead", params={"after": ID, "limit": "5"}, headers=AUTH)
    assert client.simulate_post("/admin/webhooks/dead/replay", json={}, headers=AUTH).json == \
        {"replayed": 0, "not_found": []}
    client.simulate_post("/admin/webhooks/dead/replay", json={"ids": [ID, ID]}, headers=AUTH)
    client.simulate_delete("/admin/webhooks/dead", headers=AUTH)
    client.simulate_delete("/admin/webhooks/dead", body=json.dumps({"ids": [ID]}), headers=AUTH)
    assert control.calls == [("dead_letters", None, 100), ("dead_letters", ID, 5),
                             ("replay_dead_letters", None), ("replay_dead_letters", [ID]),
                             ("discard_dead_letters", None), ("discard_dead_letters", [ID])]


def test_the_routes_need_the_token(client, control):
    for method, path in (("GET", "/admin/webhooks/dead"), ("POST", "/admin/webhooks/dead/replay"),
                         ("DELETE", "/admin/webhooks/dead")):
        assert_json_error(client.simulate_request(method, path, json={}), 401)
    assert control.calls == []


@pytest.mark.parametrize("method, path, kwargs", [
    ("GET", "/admin/webhooks/dead", {"params": {"limit": "0"}}),
    ("GET", "/admin/webhooks/dead", {"params": {"limit": "1001"}}),
    ("GET", "/admin/webhooks/dead", {"params": {"limit": "ten"}}),
    ("GET", "/admin/webhooks/dead", {"params": {"limit": "\u00b2"}}),
    ("GET", "/admin/webhooks/dead", {"params": {"limit": "1" * 5000}}),
    ("GET", "/admin/webhooks/dead", {"query_string": "after=0-0&after=1-1"}),
    ("GET", "/admin/webhooks/dead", {"params": {"after": "yesterday"}}),
    ("GET", "/admin/webhooks/dead", {"params": {"after": "18446744073709551616-0"}}),
    ("POST", "/admin/webhooks/dead/replay", {}),
    ("POST", "/admin/webhooks/dead/replay", {"body": "{not json"}),
    ("POST", "/admin/webhooks/dead/replay", {"json": []}),
    ("POST", "/admin/webhooks/dead/replay", {"json": {"ids": []}}),
    ("POST", "/admin/webhooks/dead/replay", {"json": {"ids": "1-0"}}),
    ("POST", "/admin/webhooks/dead/replay", {"json": {"ids": [1]}}),
    ("POST", "/admin/webhooks/dead/replay", {"json": {"ids": ["../x"]}}),
    ("POST", "/admin/webhooks/dead/replay", {"json": {"ids": ["1-99999999999999999999"]}}),
    ("POST", "/admin/webhooks/dead/replay", {"json": {"ids": [f"{i}-0" for i in range(1001)]}}),
    ("POST", "/admin/webhooks/dead/replay", {"json": {"every": True}}),
    ("DELETE", "/admin/webhooks/dead", {"body": "[1]"}),
    ("DELETE", "/admin/webhooks/dead", {"json": {"ids": ["x"]}}),
])
def test_bad_requests_are_4xx_json(client, control, method, path, kwargs):
    result = client.simulate_request(method, path, headers=AUTH, **kwargs)
    assert 400 <= result.status_code < 500
    assert_json_error(result, result.status_code)
    assert control.calls == []


def test_without_webhooks_404_and_with_redis_away_503():
    missing = client_for(RecordingControl(fail=WebhooksNotConfigured()))
    body = assert_json_error(missing.simulate_get("/admin/webhooks/dead", headers=AUTH), 404)
    assert body["title"] == "Webhooks not configured"
    down = client_for(RecordingControl(fail=RedisUnavailable("Redis is unavailable: Connection refused")))
    result = down.simulate_post("/admin/webhooks/dead/replay", json={}, headers=AUTH)
    assert_json_error(result, 503)
    assert result.headers.get("retry-after")
