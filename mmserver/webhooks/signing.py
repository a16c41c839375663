"""The webhook signature, in the convention receivers already know (Stripe's, GitHub's):

    X-Mmserver-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

The timestamp is signed with the body, so a captured request cannot be replayed later than the
receiver's tolerance; `v1` names the scheme, so another can be added beside it without breaking
receivers that check only v1. `verify` is what a receiver does (docs/WEBHOOKS.md has the same
in ten lines); tests and the benchmark's receiver use it.
"""
from __future__ import annotations

import hashlib
import hmac

SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300  # receivers reject signatures older (or newer) than five minutes


def digest(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, b"%d." % timestamp + body, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},{SCHEME}={digest(secret, timestamp, body)}"


def verify(secret: bytes, body: bytes, header: str | None, now: float,
           tolerance_s: float = DEFAULT_TOLERANCE_S) -> bool:
    """Whether `header` signs `body` with `secret` at a time within `tolerance_s` of `now`."""
    if not header:
        return False
    timestamp, signatures = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        # ASCII digits, a few: isdigit() alone takes '²', which int() refuses.
        if name == "t" and value.isascii() and value.isdigit() and len(value) <= 18:
            timestamp = int(value)
        elif name == SCHEME:
            signatures.append(value)
    if timestamp is None or not signatures or abs(now - timestamp) > tolerance_s:
        return False
    expected = digest(secret, timestamp, body)
    # Constant time: the comparison must not tell an attacker how many characters matched.
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)
