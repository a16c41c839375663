"""Bearer-token check for every /admin/* route.

The header is read and the token compared by mmserver.credentials, as on the public listener:
one reading of `Authorization: Bearer <token>` and one constant-time comparison for both. The
token is never logged, echoed, or put in an error body. A missing header, a malformed header
and a wrong token all get the same 401, so a caller cannot tell which one it got wrong.
"""
from __future__ import annotations

import logging

import falcon

from mmserver.credentials import SCHEME, SecretSet, bearer_token
from mmserver.logs import ThrottledWarnings

logger = logging.getLogger(__name__)

ADMIN_PREFIX = "/admin"
# Refusals are logged at most once per interval (with a count of the rest), and the path they
# quote is cut short: anyone who reaches the listener chooses both how often and how long.
REFUSAL_LOG_INTERVAL_S = 10.0
LOGGED_PATH_CHARS = 120


def is_admin_path(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


class BearerAuth:
    """Falcon middleware: refuses any /admin/* request without the right bearer token.

    It runs before routing, so an unknown /admin/* path is also 401 for an unauthenticated
    caller: the route table is not disclosed.
    """

    def __init__(self, token: str) -> None:
        if not token or not token.strip():
            # An empty token would leave the control plane open: refuse to build it.
            raise ValueError("the admin token must be a non-empty string")
        self._secrets = SecretSet([token])
        self._refusals = ThrottledWarnings(logger, REFUSAL_LOG_INTERVAL_S)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not is_admin_path(req.path):
            return
        if self._secrets.matches(bearer_token(req.get_header("Authorization"))):
            return
        # Logged without the header: a near miss of the token is as secret as the token.
        path = req.path
        if len(path) > LOGGED_PATH_CHARS:
            path = path[:LOGGED_PATH_CHARS] + "..."
        self._refusals.warning(
            "admin request refused: missing or invalid bearer token (%s %s from %s)",
            req.method, path, req.remote_addr,
        )
        raise falcon.HTTPUnauthorized(
            title="Unauthorized",
            description="This endpoint needs 'Authorization: Bearer <admin token>'.",
            challenges=[SCHEME],
        )
