"""Bearer-token check for every /admin/* route.

The token is compared in constant time (hmac.compare_digest on bytes) and never logged, echoed,
or put in an error body. A missing header, a malformed header and a wrong token all get the same
401, so a caller cannot tell which one it got wrong. The scheme name is case-insensitive
(RFC 7235 section 2.1); the token itself is compared exactly.
"""
from __future__ import annotations

import hmac
import logging

import falcon

logger = logging.getLogger(__name__)

ADMIN_PREFIX = "/admin"
CHALLENGE = "Bearer"


def presented_token(header: str | None) -> str | None:
    """The token in an `Authorization: Bearer <token>` header, or None if there is none."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = rest.strip()
    # token68 has no inner whitespace: "Bearer a b" is malformed, not the token "a b".
    if not token or any(char.isspace() for char in token):
        return None
    return token


def token_matches(presented: str | None, expected: bytes) -> bool:
    if presented is None:
        return False
    # Header values arrive as latin-1 decoded str (PEP 3333); utf-8 encodes any of them.
    return hmac.compare_digest(presented.encode("utf-8"), expected)


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
        self._expected = token.encode("utf-8")

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not is_admin_path(req.path):
            return
        if token_matches(presented_token(req.get_header("Authorization")), self._expected):
            return
        # Logged without the header: a near miss of the token is as secret as the token.
        logger.warning(
            "admin request refused: missing or invalid bearer token (%s %s from %s)",
            req.method, req.path, req.remote_addr,
        )
        raise falcon.HTTPUnauthorized(
            title="401 Unauthorized",
            description="This endpoint needs 'Authorization: Bearer <admin token>'.",
            challenges=[CHALLENGE],
        )
