"""HTTP client for the control plane, on urllib (no dependency beyond the standard library).

Each failure becomes an AdminError carrying the exit status mmadmin should return and one line
for the operator: 1 when the service is unreachable or failed, 2 when the request itself was
wrong (refused token, bad reason, wrong URL). The token goes only into the Authorization header:
redirects are not followed (urllib would resend the header to wherever it is sent) and
environment proxies are ignored (a proxy would see the token).
"""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

EXIT_FAILURE = 1  # unreachable, or the service answered with an error of its own
EXIT_USAGE = 2  # the request was wrong: usage, token, or a 4xx answer


class AdminError(Exception):
    """One line for the operator and the exit status; for an error answer, also its HTTP status
    and the service's own description of it."""

    def __init__(self, message: str, exit_status: int, *, http_status: int | None = None,
                 description: str | None = None) -> None:
        super().__init__(message)
        self.exit_status = exit_status
        self.http_status = http_status
        self.description = description


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        return None  # urllib then raises HTTPError with the 3xx answer


class AdminClient:
    def __init__(self, base_url: str, token: str, timeout: float = 10.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())

    @property
    def base_url(self) -> str:
        return self._base_url

    def status(self) -> dict:
        return self._call("GET", "/admin/status")

    def drain(self) -> dict:
        return self._call("POST", "/admin/drain")

    def shutdown(self, reason: str) -> dict:
        return self._call("POST", "/admin/shutdown", {"reason": reason})

    def undrain(self) -> dict:
        return self._call("POST", "/admin/undrain")

    def match(self, match_id: str) -> dict:
        return self._call("GET", f"/admin/matches/{_segment(match_id)}")

    def finish_match(self, match_id: str) -> dict:
        return self._call("POST", f"/admin/matches/{_segment(match_id)}/finish")

    def player(self, player_id: str) -> dict:
        return self._call("GET", f"/admin/players/{_segment(player_id)}")

    def release_player(self, player_id: str) -> dict:
        return self._call("DELETE", f"/admin/players/{_segment(player_id)}")

    def _call(self, method: str, path: str, body: Any = None) -> dict:
        url = self._base_url + path
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise _http_error(url, error) from None
        except urllib.error.URLError as error:
            raise AdminError(f"cannot reach {url}: {_why(error.reason)}", EXIT_FAILURE) from None
        except (socket.timeout, TimeoutError):
            raise AdminError(f"no answer from {url} within {self._timeout:g} s", EXIT_FAILURE) from None
        except OSError as error:  # e.g. a connection reset while reading the answer
            raise AdminError(f"cannot reach {url}: {_why(error)}", EXIT_FAILURE) from None
        try:
            answer = json.loads(raw, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
            raise AdminError(f"the answer from {url} is not JSON: is this the admin listener?",
                             EXIT_FAILURE) from None
        if not isinstance(answer, dict):
            raise AdminError(f"the answer from {url} is not a JSON object", EXIT_FAILURE)
        return answer


def _segment(value: str) -> str:
    """An id as one path segment: a '/' or '?' in it cannot reach another resource."""
    return urllib.parse.quote(value, safe="")


def _why(reason: object) -> str:
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    return getattr(reason, "strerror", None) or str(reason)


def _http_error(url: str, error: urllib.error.HTTPError) -> AdminError:
    if error.code == 401:
        return AdminError("the admin token was refused", EXIT_USAGE, http_status=401)
    detail, description = _error_detail(error)
    message = f"{url} answered {detail}"
    if 300 <= error.code < 400:
        return AdminError(f"{message} (redirects are not followed: check the URL)", EXIT_FAILURE,
                          http_status=error.code, description=description)
    return AdminError(message, EXIT_USAGE if error.code < 500 else EXIT_FAILURE,
                      http_status=error.code, description=description)


def _refuse_constant(name: str) -> None:
    # NaN and Infinity are not JSON (the service never sends them) and break the rendering.
    raise ValueError(f"{name} is not JSON")


def _error_detail(error: urllib.error.HTTPError) -> tuple[str, str | None]:
    """('<code> <title>: <description>', description) from a JSON error body, else
    ('<code> <reason>', None)."""
    fallback = f"{error.code} {error.reason}".strip()
    try:
        body = json.loads(error.read(65536) or b"null", parse_constant=_refuse_constant)
    except (OSError, ValueError, RecursionError):
        return fallback, None
    if not isinstance(body, dict) or not body.get("title"):
        return fallback, None
    title = " ".join(str(body["title"]).split())
    # Titles are bare ("Not Found"); an older service put the code in them ("404 Not Found").
    if not title.startswith(f"{error.code} "):
        title = f"{error.code} {title}"
    description = str(body["description"]) if body.get("description") else None
    # One line for the operator, whatever the body holds.
    description = " ".join(description.split()) if description else None
    return (f"{title}: {description}" if description else title), description
