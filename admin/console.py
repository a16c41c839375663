"""The operator console: one HTML page, its stylesheet and its script, served as files.

The page holds no data and loads without a token (SPEC "Control plane"): the operator types the
admin token into it, the script keeps it in sessionStorage (gone when the tab closes, never in a
URL, never in a cookie the browser would send on its own), and every data call it makes is an
ordinary /admin/* request with `Authorization: Bearer <token>`. So the console adds no way in
that the API does not already have; the files are static and the same for every caller.

No build step and no framework, like Sidekiq's Web UI or rq-dashboard: plain HTML, CSS and one
script. The files are read once when the app is built (a missing file fails at start-up, not at
the first visit).
"""
from __future__ import annotations

import logging
from importlib import resources

import falcon

logger = logging.getLogger(__name__)

CONSOLE_PATH = "/console"

# The page needs nothing but its own script, stylesheet and same-origin JSON calls: anything
# else (inline script, a foreign host, framing by another site) is refused by the browser.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

# name -> content type; exactly these files are served, no path from the request is opened.
FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}


def load_files() -> dict[str, bytes]:
    folder = resources.files(__package__).joinpath("console")
    return {name: folder.joinpath(name).read_bytes() for name in FILES}


class SecurityHeaders:
    """Middleware: headers that keep a browser from misusing any answer of the admin listener.

    Every answer gets them, JSON included: a JSON body sniffed as HTML or framed by another
    site is as bad as the page.
    """

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: object,
                         req_succeeded: bool) -> None:
        resp.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("X-Frame-Options", "DENY")
        resp.set_header("Referrer-Policy", "no-referrer")


class ConsoleResource:
    """GET /console (the page) and GET /console/{name} (its stylesheet and script)."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self._files = load_files() if files is None else files

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._send(resp, "index.html")

    def on_get_file(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        if name not in FILES or name == "index.html":
            raise falcon.HTTPNotFound()
        self._send(resp, name)

    def _send(self, resp: falcon.Response, name: str) -> None:
        resp.content_type = FILES[name]
        resp.data = self._files[name]
        # The files change only with the installed version; a reload after an upgrade must
        # not run an old script against a new API.
        resp.set_header("Cache-Control", "no-cache")
