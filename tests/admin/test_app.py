"""The control-plane Falcon app through falcon.testing, with a recording Control."""
from __future__ import annotations

import io
import json
import logging

import falcon.testing
import pytest

from mmserver_admin.app import create_admin_app
from tests.admin.controls import TOKEN, RecordingControl, metrics

AUTH = {"Authorization": f"Bearer {TOKEN}"}
ADMIN_ROUTES = [("POST", "/admin/shutdown"), ("POST", "/admin/drain"), ("GET", "/admin/status")]


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

