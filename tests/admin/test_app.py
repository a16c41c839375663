"""The control-plane Falcon app through falcon.testing, with a recording Control."""
from __future__ import annotations

import io
import json
import logging

import falcon.testing
import pytest

from mmserver_admin.app import create_admin_app
from mmserver.store import RedisUnavailable
from tests.admin.controls import MATCH, PLAYER, TOKEN, RecordingControl, metrics

AUTH = {"Authorization": f"Bearer {TOKEN}"}
ADMIN_ROUTES = [("POST", "/admin/shutdown"), ("POST", "/admin/drain"), ("POST", "/admin/undrain"),
                ("GET", "/admin/status"), ("GET", "/admin/matches"), ("GET", "/admin/matches/m-7Qx2"),
                ("POST", "/admin/matches/m-7Qx2/finish"), ("GET", "/admin/players/alice"),
                ("DELETE", "/admin/players/alice")]


@pytest.fixture
def control() -> RecordingControl:
    return RecordingControl()


@pytest.fixture
def client(control) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_admin_app(control, token=TOKEN, metrics=metrics,
                                                      max_body_bytes=1024))


def assert_json_error(result, status: int) -> dict:
    assert result.status_code == status, result.text
    assert result.headers["content-type"].startswith("application/json")
    body = result.json
    assert set(body) == {"title", "description"}
    assert body["title"] and body["description"]
    assert "Traceback" not in result.text
    return body


# --- authentication ---

@pytest.mark.parametrize("method,path", ADMIN_ROUTES)
@pytest.mark.parametrize("header", [
    None,                               # missing
    "",                                 # empty
    TOKEN,                              # no scheme
    f"Basic {TOKEN}",                   # other scheme
    "Bearer",                           # scheme, no token
    "Bearer ",                          # scheme, blank token
    f"Bearer {TOKEN} extra",            # two tokens
    f"Bearer {TOKEN[:-1]}",             # a prefix
    f"Bearer {TOKEN}x",                 # one char too many
    f"Bearer {TOKEN[:-1]}Z",            # one char off
    f"Bearer {TOKEN.upper()}",          # the token is case-sensitive
    "Bearer wrong-token",               # plainly wrong
    "Bearer t\u00f6ken",                # non-ASCII (latin-1 in WSGI)
])
def test_every_admin_route_refuses_without_the_right_token(client, control, method, path, header):
    headers = {} if header is None else {"Authorization": header}
    result = client.simulate_request(method, path, headers=headers, json={"reason": "x"})
    assert assert_json_error(result, 401)["title"] == "Unauthorized"
    assert result.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in result.text and TOKEN[:-1] not in result.text
    assert control.calls == []


def test_missing_and_wrong_tokens_get_the_same_answer(client):
    missing = client.simulate_get("/admin/status")
    wrong = client.simulate_get("/admin/status", headers={"Authorization": "Bearer nope"})
    assert (missing.status, missing.text, missing.headers["www-authenticate"]) == (
        wrong.status, wrong.text, wrong.headers["www-authenticate"])


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_scheme_is_case_insensitive(client, scheme):
    # RFC 7235 section 2.1: the auth-scheme is a case-insensitive token.
    result = client.simulate_get("/admin/status", headers={"Authorization": f"{scheme} {TOKEN}"})
    assert result.status_code == 200


def test_unknown_admin_path_is_401_before_404(client):
    # Authentication runs before routing: the route table is not disclosed.
    assert client.simulate_get("/admin/secret-route").status_code == 401
    assert_json_error(client.simulate_get("/admin/secret-route", headers=AUTH), 404)


def test_empty_token_is_refused_at_construction(control):
    with pytest.raises(ValueError):
        create_admin_app(control, token="")
    with pytest.raises(ValueError):
        create_admin_app(control, token="   ")


# --- shutdown ---

def test_shutdown_answers_202_with_the_controls_answer_and_calls_it_once(client, control):
    result = client.simulate_post("/admin/shutdown", headers=AUTH,
                                  json={"reason": "  deploying v2  "})
    assert result.status_code == 202
    assert result.json == {"state": "stopping", "reason": "deploying v2", "exit_status": 1}
    assert result.headers["cache-control"] == "no-store"
    assert control.calls == [("request_shutdown", "deploying v2")]


@pytest.mark.parametrize("body,why", [
    (b"", "A JSON body is required."),
    (b"   ", "A JSON body is required."),
    (b"{}", "'reason' is required"),
    (b'{"reason": ""}', "'reason' is required"),
    (b'{"reason": "   "}', "'reason' is required"),
    (b'{"reason": null}', "'reason' is required"),
    (b'{"reason": 42}', "'reason' is required"),
    (b'{"reason": ["a"]}', "'reason' is required"),
    (json.dumps({"reason": "x" * 201}).encode(), "longer than 200"),
    (b'{"reason": "two\\nlines"}', "control characters"),
    (b'{"reason": "nul\\u0000"}', "control characters"),
    (b'{"reason": ', "not valid JSON"),
    (b"reason=deploy", "not valid JSON"),
    (b"\xff\xfe\x00", "not valid JSON"),
    (b'["reason"]', "must be a JSON object"),
    (b'"reason"', "must be a JSON object"),
    (b"[" * 1020, "nested too deeply"),  # within the body limit, beyond the parser's depth
])
def test_shutdown_refuses_a_bad_body_with_400(client, control, body, why):
    result = client.simulate_post("/admin/shutdown", headers={**AUTH, "Content-Type": "application/json"},
                                  body=body)
    assert why in assert_json_error(result, 400)["description"]
    assert control.calls == []


def test_reason_of_exactly_200_chars_is_accepted(client, control):
    result = client.simulate_post("/admin/shutdown", headers=AUTH, json={"reason": "r" * 200})
    assert result.status_code == 202
    assert control.calls == [("request_shutdown", "r" * 200)]


def test_oversized_body_is_413_and_never_reaches_the_control(client, control):
    result = client.simulate_post("/admin/shutdown", headers=AUTH, json={"reason": "x" * 2000})
    body = assert_json_error(result, 413)
    # The public API's limit and wording: one BodyLimit for both listeners.
    assert body == {"title": "Body too large",
                    "description": "The request body must not exceed 1024 bytes."}
    assert client.simulate_post("/admin/drain", headers=AUTH, body=b"x" * 1025).status_code == 413
    assert control.calls == []


def _chunked_environ(body: bytes, headers: dict) -> dict:
    """A chunked request as a WSGI server without de-chunking presents it: no CONTENT_LENGTH."""
    environ = falcon.testing.create_environ(path="/admin/shutdown", method="POST",
                                            headers={**headers, "Content-Type": "application/json"},
                                            body=body)
    del environ["CONTENT_LENGTH"]
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input"] = io.BytesIO(body)
    return environ


def test_body_without_declared_length_is_limited_like_the_public_api(control):
    app = create_admin_app(control, token=TOKEN, max_body_bytes=1024)
    environ = _chunked_environ(json.dumps({"reason": "x" * 2000}).encode(), AUTH)
    status, _, payload = _call_wsgi(app, environ)
    assert status.startswith("413"), status
    assert json.loads(payload)["title"] == "Body too large"
    # never read past one byte over the limit
    assert environ["wsgi.input"].tell() == 1025
    assert control.calls == []
    # within the limit, the same request is served
    status, _, payload = _call_wsgi(app, _chunked_environ(b'{"reason": "chunked"}', AUTH))
    assert status.startswith("202"), status
    assert control.calls == [("request_shutdown", "chunked")]


def test_an_unauthenticated_body_is_never_read(control):
    app = create_admin_app(control, token=TOKEN, max_body_bytes=1024)
    environ = _chunked_environ(b'{"reason": "sneaky"}', {})
    status, _, _ = _call_wsgi(app, environ)
    assert status.startswith("401"), status
    assert environ["wsgi.input"].tell() == 0
    assert control.calls == []


def _call_wsgi(app, environ) -> tuple[str, list, bytes]:
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, headers

    payload = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], payload


# --- drain, status, metrics ---

def test_drain_answers_200_with_the_controls_answer(client, control):
    result = client.simulate_post("/admin/drain", headers=AUTH)
    assert result.status_code == 200
    assert result.json["state"] == "draining"
    assert control.calls == [("drain",)]


def test_status_answers_the_controls_data_as_json(client, control):
    result = client.simulate_get("/admin/status", headers=AUTH)
    assert result.status_code == 200
    assert result.json["queues"]["duel"]["queued"] == 4
    assert result.json["workers"]["subscriber"]["reconnect_attempts"] == 3
    assert control.calls == [("status",)]


def test_metrics_needs_no_token(client):
    result = client.simulate_get("/metrics")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "mm_tickets_queued 4" in result.text


def test_metrics_is_404_when_not_configured(control):
    client = falcon.testing.TestClient(create_admin_app(control, token=TOKEN))
    assert_json_error(client.simulate_get("/metrics"), 404)


# --- errors are JSON ---

def test_unknown_route_and_wrong_method_are_json(client):
    assert_json_error(client.simulate_get("/nowhere"), 404)
    # Even for a client that prefers XML, which Falcon's default serializer would honour.
    assert_json_error(client.simulate_get("/nowhere", headers={"Accept": "application/xml"}), 404)
    result = client.simulate_get("/admin/shutdown", headers=AUTH)
    assert_json_error(result, 405)
    assert "POST" in result.headers["allow"]
    assert_json_error(client.simulate_delete("/metrics"), 405)


def test_a_failing_control_is_a_json_500_without_traceback(control):
    failing = RecordingControl(fail_status=RuntimeError("store exploded at line 42"))
    client = falcon.testing.TestClient(create_admin_app(failing, token=TOKEN))
    result = client.simulate_get("/admin/status", headers=AUTH)
    assert_json_error(result, 500)
    assert "exploded" not in result.text


def test_unserializable_status_is_a_json_500(control):
    odd = RecordingControl(status={"state": "running", "since": object()})
    client = falcon.testing.TestClient(create_admin_app(odd, token=TOKEN))
    assert_json_error(client.simulate_get("/admin/status", headers=AUTH), 500)


# --- the token never reaches a log ---

def test_the_token_never_appears_in_logs(caplog):
    caplog.set_level(logging.DEBUG)  # every logger, every level
    failing = RecordingControl(fail_status=RuntimeError("boom"))
    app = create_admin_app(failing, token=TOKEN, metrics=metrics, max_body_bytes=1024)
    client = falcon.testing.TestClient(app)
    errors = io.StringIO()  # Falcon's own wsgi.errors stream
    near_misses = [TOKEN, TOKEN[:-1], TOKEN + "x", TOKEN[:-1] + "Z", TOKEN.lower()]
    for candidate in near_misses:
        for scheme in ("Bearer", "bearer", "Basic"):
            headers = {"Authorization": f"{scheme} {candidate}"}
            client.simulate_get("/admin/status", headers=headers, wsgierrors=errors)
            client.simulate_post("/admin/shutdown", headers=headers, body=b"{bad",
                                 wsgierrors=errors)
            client.simulate_post("/admin/shutdown", headers=headers, json={"reason": "r" * 300},
                                 wsgierrors=errors)
            client.simulate_post("/admin/shutdown", headers=headers, body=b"x" * 5000,
                                 wsgierrors=errors)
            client.simulate_post("/admin/drain", headers=headers, wsgierrors=errors)
            client.simulate_get("/admin/nowhere", headers=headers, wsgierrors=errors)
    client.simulate_post("/admin/shutdown", headers=AUTH, json={"reason": "planned"},
                         wsgierrors=errors)
    logged = caplog.text + errors.getvalue()
    # The run did log: refusals, the 500 with its traceback, the shutdown request.
    assert "admin request refused" in logged
    assert "unhandled error in GET /admin/status" in logged and "RuntimeError: boom" in logged
    assert "admin shutdown requested" in logged and "planned" in logged
    for candidate in near_misses:
        assert candidate not in logged
    assert TOKEN[:8] not in logged


def test_refusals_are_logged_once_per_interval_with_the_path_cut_short(client, caplog):
    # Anyone who reaches the listener chooses how often a refusal is logged and how long a
    # path it quotes: a flood of long paths makes one short line, then counts the rest.
    caplog.set_level(logging.WARNING, logger="mmserver_admin.auth")
    for _ in range(50):
        assert client.simulate_get("/admin/" + "x" * 100_000).status_code == 401
    refusals = [r.getMessage() for r in caplog.records if "admin request refused" in r.getMessage()]
    assert len(refusals) == 1, refusals
    assert len(refusals[0]) < 300 and "/admin/xxxx" in refusals[0] and "..." in refusals[0]


# --- extra open routes (the service's probes) ---

def test_extra_routes_are_served_without_a_token(control):
    from mmserver.http.health import Liveness, ReadinessResource
    from mmserver.readiness import Readiness

    readiness = Readiness()
    app = create_admin_app(control, token=TOKEN, routes={"/healthz": Liveness(),
                                                         "/readyz": ReadinessResource(readiness)})
    client = falcon.testing.TestClient(app)
    assert client.simulate_get("/healthz").json == {"status": "alive"}
    assert client.simulate_get("/readyz").status_code == 503  # not started
    readiness.mark_started()
    readiness.set_redis_connected(True)
    assert client.simulate_get("/readyz").json == {"status": "ready"}
    # the token check still covers /admin/*
    assert client.simulate_get("/admin/status").status_code == 401


@pytest.mark.parametrize("path", ["/admin/status", "/admin/extra", "/metrics"])
def test_extra_routes_cannot_take_a_control_plane_path(control, path):
    with pytest.raises(ValueError):
        create_admin_app(control, token=TOKEN, routes={path: object()})


# --- undrain, matches, players ---

def test_undrain_answers_200_with_the_controls_answer(client, control):
    result = client.simulate_post("/admin/undrain", headers=AUTH)
    assert result.status_code == 200
    assert result.json == {"state": "running", "accepting_tickets": True, "ready": True,
                           "readiness": "ready"}
    assert result.headers["cache-control"] == "no-store"
    assert control.calls == [("undrain",)]


def test_undrain_while_stopping_passes_the_stopping_state_through():
    stopping = RecordingControl(stopping=True)
    client = falcon.testing.TestClient(create_admin_app(stopping, token=TOKEN))
    result = client.simulate_post("/admin/undrain", headers=AUTH)
    assert result.status_code == 200
    assert result.json["state"] == "stopping" and result.json["accepting_tickets"] is False


def test_match_answers_the_controls_data(client, control):
    result = client.simulate_get(f"/admin/matches/{MATCH['match_id']}", headers=AUTH)
    assert result.status_code == 200
    assert result.json == MATCH
    assert result.headers["cache-control"] == "no-store"
    assert control.calls == [("match", MATCH["match_id"])]


def test_finish_match_answers_the_controls_data(client, control):
    result = client.simulate_post(f"/admin/matches/{MATCH['match_id']}/finish", headers=AUTH)
    assert result.status_code == 200
    assert result.json["status"] == "finished" and result.json["match_id"] == MATCH["match_id"]
    assert control.calls == [("finish_match", MATCH["match_id"])]


def test_player_answers_the_controls_data(client, control):
    result = client.simulate_get("/admin/players/alice", headers=AUTH)
    assert result.status_code == 200
    assert result.json == PLAYER
    assert control.calls == [("player", "alice")]


def test_release_player_answers_the_controls_data(client, control):
    result = client.simulate_delete("/admin/players/alice", headers=AUTH)
    assert result.status_code == 200
    assert result.json["released"] is True and result.json["player_id"] == "alice"
    assert control.calls == [("release_player", "alice")]


@pytest.mark.parametrize("method,path,call", [
    ("GET", "/admin/matches/m-gone", ("match", "m-gone")),
    ("POST", "/admin/matches/m-gone/finish", ("finish_match", "m-gone")),
    ("GET", "/admin/players/carol", ("player", "carol")),
    ("DELETE", "/admin/players/carol", ("release_player", "carol")),
])
def test_nothing_by_that_id_is_a_json_404(client, control, method, path, call):
    result = client.simulate_request(method, path, headers=AUTH)
    body = assert_json_error(result, 404)
    assert body["title"] == "Not found"
    assert call[1] in body["description"]  # the store's own sentence
    assert result.headers["cache-control"] == "no-store"
    assert control.calls == [call]


@pytest.mark.parametrize("match_id", ["m.1", "m:1", "m!1", "x" * 65, "m%2A1", "caf%C3%A9"])
@pytest.mark.parametrize("method,suffix", [("GET", ""), ("POST", "/finish")])
def test_a_match_id_the_store_cannot_have_made_is_404_without_asking(client, control, match_id,
                                                                     method, suffix):
    result = client.simulate_request(method, f"/admin/matches/{match_id}{suffix}", headers=AUTH)
    assert assert_json_error(result, 404)["title"] == "Match not found"
    assert control.calls == []


@pytest.mark.parametrize("player_id", ["p!1", "p*1", "x" * 65, "caf%C3%A9", "p%201"])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_malformed_player_id_is_400_without_asking(client, control, player_id, method):
    result = client.simulate_request(method, f"/admin/players/{player_id}", headers=AUTH)
    assert "player_id" in assert_json_error(result, 400)["description"]
    assert control.calls == []


@pytest.mark.parametrize("player_id", ["p.1", "team:7", "a-b_c", "x" * 64])
def test_every_player_id_the_public_api_accepts_is_looked_up(client, control, player_id):
    result = client.simulate_get(f"/admin/players/{player_id}", headers=AUTH)
    assert_json_error(result, 404)  # looked up, not refused: RecordingControl knows only alice
    assert control.calls == [("player", player_id)]


@pytest.mark.parametrize("method,path", [
    ("POST", "/admin/undrain"),
    ("GET", f"/admin/matches/{MATCH['match_id']}"),
    ("POST", f"/admin/matches/{MATCH['match_id']}/finish"),
    ("GET", "/admin/players/alice"),
    ("DELETE", "/admin/players/alice"),
])
def test_redis_unavailable_is_503_with_retry_after_never_500(method, path):
    down = RecordingControl(fail=RedisUnavailable("Redis is unavailable: Connection refused"))
    client = falcon.testing.TestClient(create_admin_app(down, token=TOKEN))
    result = client.simulate_request(method, path, headers=AUTH)
    assert_json_error(result, 503)
    assert int(result.headers["retry-after"]) > 0
    assert result.headers["cache-control"] == "no-store"
    assert len(down.calls) == 1


@pytest.mark.parametrize("method,path", [
    ("GET", "/admin/undrain"),
    ("DELETE", f"/admin/matches/{MATCH['match_id']}"),
    ("GET", f"/admin/matches/{MATCH['match_id']}/finish"),
    ("POST", "/admin/players/alice"),
])
def test_wrong_methods_on_the_new_routes_are_json_405(client, control, method, path):
    assert_json_error(client.simulate_request(method, path, headers=AUTH), 405)
    assert control.calls == []


def test_operator_actions_are_logged_with_the_remote_address_never_the_token(client, caplog):
    caplog.set_level(logging.DEBUG)
    client.simulate_post("/admin/undrain", headers=AUTH, remote_addr="10.1.2.3")
    client.simulate_post(f"/admin/matches/{MATCH['match_id']}/finish", headers=AUTH,
                         remote_addr="10.1.2.3")
    client.simulate_delete("/admin/players/alice", headers=AUTH, remote_addr="10.1.2.3")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "admin undrain requested from 10.1.2.3" in warnings
    assert f"admin finish of match {MATCH['match_id']} requested from 10.1.2.3" in warnings
    assert "admin release of player alice requested from 10.1.2.3" in warnings
    assert TOKEN not in caplog.text


# --- the running matches (the console's list) ---

def test_running_matches_default_and_explicit_limit(client, control):
    result = client.simulate_get("/admin/matches", headers=AUTH)
    assert result.status_code == 200
    assert result.json == {"matches": [MATCH], "total": 1}
    assert client.simulate_get("/admin/matches", headers=AUTH, params={"limit": "200"}).status_code == 200
    assert control.calls == [("running_matches", 50), ("running_matches", 200)]


@pytest.mark.parametrize("limit", ["0", "201", "-1", "ten", "1.5", "", "%C2%B2", "1" * 5000, "0" * 30 + "5",
                                   "1&limit=2"])
def test_running_matches_refuse_a_bad_limit(client, control, limit):
    result = client.simulate_get("/admin/matches", headers=AUTH, query_string=f"limit={limit}")
    if limit == "":
        assert result.status_code == 200  # an empty value is the default
        return
    assert_json_error(result, 400)
    assert control.calls == []
