"""Protocol-level refusals: body limit, content type, malformed JSON, routes, methods, Redis down,
and the catch-all for bugs. Each answers JSON {"title", "description"} (checked by the client)."""
from __future__ import annotations

import io
import json
import logging

import falcon
import falcon.testing
import pytest
from redis.backoff import NoBackoff
from redis.retry import Retry

from mmserver.http.app import create_public_app
from mmserver.store import Store
from tests.api.conftest import DocumentedClient, bearer, create_ticket, openapi
from tests.redis_server import RedisServer

TICKET = {"player_id": "p1", "mode": "duel", "mmr": 1500}


def post_raw(client, body: bytes, content_type: str | None = "application/json", **headers):
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.simulate_post("/v1/tickets", body=body, headers=headers)


def test_body_over_the_limit_is_413_before_reading(client, config):
    padded = json.dumps({**TICKET, "region": "eu"}).encode() + b" " * config.max_body_bytes
    result = post_raw(client, padded)
    assert result.status_code == 413
    assert str(config.max_body_bytes) in result.json["description"]


def test_body_at_the_limit_is_accepted(client, config):
    body = json.dumps(TICKET).encode()
    body += b" " * (config.max_body_bytes - len(body))
    assert len(body) == config.max_body_bytes
    assert post_raw(client, body).status_code == 201


def test_body_longer_than_declared_is_413(client):
    body = json.dumps(TICKET).encode()
    result = post_raw(client, body + b" " * 50, **{"Content-Length": str(len(body))})
    assert result.status_code == 413


def test_declared_length_over_the_limit_is_413_even_with_a_small_body(client, config):
    result = post_raw(client, b"{}", **{"Content-Length": str(config.max_body_bytes + 1)})
    assert result.status_code == 413


def call_without_content_length(app: falcon.App, body: bytes) -> tuple[str, dict]:
    """A chunked request as a WSGI server without de-chunking presents it: no CONTENT_LENGTH."""
    env = falcon.testing.create_environ(method="POST", path="/v1/tickets",
                                        headers={"Content-Type": "application/json"})
    env.pop("CONTENT_LENGTH", None)
    env["HTTP_TRANSFER_ENCODING"] = "chunked"
    env["wsgi.input"] = io.BytesIO(body)
    start = falcon.testing.StartResponseMock()
    text = b"".join(app(env, start))
    return start.status, json.loads(text)


def test_chunked_body_over_the_limit_is_413(app, config):
    body = json.dumps(TICKET).encode() + b" " * config.max_body_bytes
    status, answer = call_without_content_length(app, body)
    assert status.startswith("413")
    assert answer["title"] and answer["description"]


def test_chunked_body_within_the_limit_is_read(app):
    status, answer = call_without_content_length(app, json.dumps(TICKET).encode())
    assert status.startswith("201"), answer
    assert answer["player_id"] == "p1"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/xml"])
def test_non_json_content_type_is_415(client, content_type):
    assert post_raw(client, b"player_id=p1", content_type).status_code == 415


def test_json_with_charset_is_json_and_a_body_without_content_type_is_415(client):
    assert post_raw(client, json.dumps(TICKET).encode(), "application/json; charset=utf-8").status_code == 201
    other = {**TICKET, "player_id": "p2"}
    refused = post_raw(client, json.dumps(other).encode(), None)
    assert refused.status_code == 415 and "application/json" in refused.json["description"]


@pytest.mark.parametrize("body", [
    b"{", b"", b"null x", b'{"player_id": "p1", "mode": "duel", "mmr": NaN}',
    b'{"player_id": "p1", "mode": "duel", "mmr": Infinity}', b"\xff\xfe{}",
    b"[" * 2000 + b"]" * 2000, b'{"mmr": 1' + b"0" * 4400 + b"}",
])
def test_malformed_json_is_400(client, body):
    assert post_raw(client, body).status_code == 400


def test_unknown_route_is_404(client):
    assert client.simulate_get("/v2/tickets").status_code == 404
    assert client.simulate_get("/").status_code == 404
    assert client.simulate_get("/v1/tickets/a/b/c").status_code == 404


def test_wrong_method_is_405_with_allow(client):
    result = client.simulate_patch("/v1/tickets")
    assert result.status_code == 405
    assert "POST" in result.headers["allow"]
    assert client.simulate_put("/v1/tickets/abc").status_code == 405
    assert client.simulate_get("/v1/tickets/abc/accept").status_code == 405
    assert client.simulate_delete("/healthz").status_code == 405


def test_errors_are_json_even_when_the_client_prefers_xml(client):
    result = client.simulate_get("/nowhere", headers={"Accept": "application/xml"})
    assert result.status_code == 404
    assert result.headers["content-type"].startswith("application/json")


class BuggyStore(Store):
    """A real Store with one bug planted, to reach the catch-all handler."""

    def read_ticket(self, ticket_id: str, token: str | None = None, *, access: str | None = None) -> dict:
        raise KeyError("planted bug")


def test_a_bug_is_a_logged_json_500_without_traceback(redis_client, config, waiters, readiness,
                                                      observed_statuses, caplog):
    store = BuggyStore(redis_client, config.modes, config.servers)
    app = create_public_app(store=store, waiters=waiters, readiness=readiness, config=config)
    client = DocumentedClient(app, openapi(), observed_statuses)
    created, auth = create_ticket(client)
    with caplog.at_level(logging.ERROR):
        result = client.simulate_get(f"/v1/tickets/{created['ticket_id']}", headers=auth)
    assert result.status_code == 500
    assert "planted bug" not in result.text
    logged = [record for record in caplog.records
              if record.name == "mmserver.http.errors" and record.exc_info
              and isinstance(record.exc_info[1], KeyError)]
    assert logged, "the bug was not logged with its traceback"


def test_redis_unreachable_is_503_with_retry_after(tmp_path, config, waiters, readiness, observed_statuses,
                                                  caplog):
    server = RedisServer(tmp_path / "redis", appendonly=False).start()
    try:
        # No hidden retries: the 503 should come at once, not after redis-py's backoff.
        client_redis = server.client(decode_responses=True, socket_timeout=1, socket_connect_timeout=1,
                                     retry=Retry(NoBackoff(), 0))
        store = Store(client_redis, config.modes, config.servers)
        app = create_public_app(store=store, waiters=waiters, readiness=readiness, config=config)
        client = DocumentedClient(app, openapi(), observed_statuses)
        created, auth = create_ticket(client)
        server.kill()
        for method, path, body in [
            ("POST", "/v1/tickets", {**TICKET, "player_id": "p2"}),
            ("GET", f"/v1/tickets/{created['ticket_id']}", None),
            ("DELETE", f"/v1/tickets/{created['ticket_id']}", None),
            ("PUT", "/v1/servers/gs-1", {"address": "10.0.0.5:7777"}),
        ]:
            headers = bearer(config.servers.token) if path.startswith("/v1/servers") else auth
            result = client.simulate_request(method, path, json=body, headers=headers)
            assert result.status_code == 503, (method, path, result.text)
            assert int(result.headers["retry-after"]) > 0
        client_redis.close()
        # Every request fails the same way while Redis is away: one line says so, no traceback.
        logged = [r for r in caplog.records if r.name == "mmserver.http.errors"]
        assert [(r.levelname, r.exc_info) for r in logged] == [("WARNING", None)]
        assert logged[0].getMessage().startswith("Redis unavailable during POST /v1/tickets: ")
    finally:
        server.stop()
