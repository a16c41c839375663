"""The operator console's files through falcon.testing: served without a token, holding no data,
and locked down by the security headers. The browser test is tests/live/test_console_browser.py."""
from __future__ import annotations

import re

import falcon.testing
import pytest

from mmserver_admin.app import create_admin_app
from mmserver_admin.console import FILES
from tests.admin.controls import TOKEN, RecordingControl, metrics


@pytest.fixture
def control() -> RecordingControl:
    return RecordingControl()


@pytest.fixture
def client(control) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_admin_app(control, token=TOKEN, metrics=metrics))


@pytest.mark.parametrize("path,kind", [("/console", "text/html"), ("/console/console.js", "text/javascript"),
                                       ("/console/console.css", "text/css")])
def test_console_files_load_without_a_token_and_call_nothing(client, control, path, kind):
    result = client.simulate_get(path)
    assert result.status_code == 200
    assert result.headers["content-type"].startswith(kind)
    # Static: serving a file asks the service for nothing, so the page can hold no data.
    assert control.calls == []
    assert TOKEN not in result.text


def test_page_names_only_its_own_script_and_stylesheet(client):
    page = client.simulate_get("/console").text
    assert set(re.findall(r'(?:src|href)="([^"]+)"', page)) == {"/console/console.js", "/console/console.css"}
    # No inline script: the CSP below would block it, and it would be a place for data to hide.
    assert re.findall(r"<script[^>]*>\s*[^<\s]", page) == []
    assert 'type="password"' in page


def test_the_script_keeps_the_token_in_session_storage_and_sends_it_as_bearer(client):
    script = client.simulate_get("/console/console.js").text
    assert "sessionStorage" in script and "localStorage" not in script
    assert '"Authorization": "Bearer " + token()' in script
    assert "innerHTML" not in script  # values are written as text, never parsed as markup


@pytest.mark.parametrize("path", ["/console", "/console/console.js", "/admin/status", "/metrics"])
def test_every_answer_carries_the_security_headers(client, path):
    headers = client.simulate_get(path, headers={"Authorization": f"Bearer {TOKEN}"}).headers
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("name", ["index.html", "../app.py", "console.py", "secret", ""])
def test_only_the_listed_files_are_served(client, name):
    assert client.simulate_get(f"/console/{name}").status_code == 404
    assert set(FILES) == {"index.html", "console.js", "console.css"}


def test_an_extra_route_cannot_take_the_console_path(control):
    with pytest.raises(ValueError):
        create_admin_app(control, token=TOKEN, routes={"/console": object()})
