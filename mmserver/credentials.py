"""Bearer credentials: how every listener reads and compares them.

One reading of `Authorization: Bearer <token>` for the public API and the control plane, and
one comparison: secrets are compared as SHA-256 digests with `hmac.compare_digest`, against
every key of a set without stopping at the first match, so timing reveals neither which key
matched nor how much of a guess was right. Nothing here logs a token or puts it in an error.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Iterable

SCHEME = "Bearer"


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None when there is none.

    The scheme is case-insensitive (RFC 7235 2.1); the token is token68, so a value with inner
    whitespace ("Bearer a b") is malformed rather than the token "a b".
    """
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = rest.strip()
    if not token or any(char.isspace() for char in token):
        return None
    return token


def _digest(secret: str) -> bytes:
    # Header values arrive as latin-1 decoded str (PEP 3333); utf-8 with surrogatepass encodes
    # any of them, and a digest gives every comparison the same length.
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


class SecretSet:
    """One or more secrets (several during a rotation), matched in constant time."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._digests = tuple(_digest(secret) for secret in secrets)
        if not self._digests:
            raise ValueError("a secret set needs at least one secret")

    def __len__(self) -> int:
        return len(self._digests)

    def matches(self, presented: str | None) -> bool:
        if presented is None:
            return False
        candidate = _digest(presented)
        found = False
        for digest in self._digests:  # every key, always: no early exit
            found |= hmac.compare_digest(candidate, digest)
        return found
