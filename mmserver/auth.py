"""Who is calling the public API, from its bearer credential (SPEC "Who may call what").

A request carries at most one credential, told apart by what it matches:
- a backend key of `[auth]` (the game's backend: any player, any ticket);
- the server token of `[servers]` (dedicated game servers);
- a JWT (three dot-separated parts) signed by the game's auth service: a player, whose id is
  the `sub` claim, whose party is the `party` claim;
- anything else is taken for a ticket token, which only the ticket's own script can check.

Secrets are compared in constant time (credentials.SecretSet) and never logged; a refused
credential raises Unauthorized with a reason that names what was wrong, never the token.
Verified player tokens are kept in a small bounded cache until their expiry, so a client that
polls with the same token pays for the signature check once.
"""
from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import jwt

from mmserver.config import AuthConfig
from mmserver.credentials import SecretSet, bearer_token

PLAYER_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
CLOCK_SKEW_S = 30  # leeway on exp, nbf and iat
MAX_PARTY_CLAIM = 64
TOKEN_CACHE_SIZE = 20000
MAX_TOKEN_CHARS = 8192


class Unauthorized(Exception):
    """No usable credential: 401. The description never quotes the credential."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass(frozen=True)
class Caller:
    kind: str  # "backend", "server", "player", "ticket" or "anonymous"
    player_id: str | None = None
    party: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict)
    ticket_token: str | None = None
    # A stable, non-secret name of the credential for rate limits (a digest, never the token).
    limit_key: str = ""

    @property
    def is_backend(self) -> bool:
        return self.kind == "backend"

    @property
    def is_server(self) -> bool:
        return self.kind == "server"

    @property
    def is_player(self) -> bool:
        return self.kind == "player"


ANONYMOUS = Caller(kind="anonymous")


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def _name(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class PlayerTokens:
    """Verifies player JWTs with PyJWT: the algorithm is the configured one, never the token's."""

    def __init__(self, auth: AuthConfig, *, clock: Callable[[], float] = time.time) -> None:
        assert auth.player_jwt_key is not None and auth.player_jwt_algorithm is not None
        self._key = auth.player_jwt_key
        self._algorithms = [auth.player_jwt_algorithm]
        self._issuer = auth.player_jwt_issuer
        self._audience = auth.player_jwt_audience
        self._clock = clock
        self._cache: dict[str, tuple[float, Caller]] = {}
        self._lock = threading.Lock()
        self._jwt = jwt.PyJWT(options={"require": ["exp", "sub"], "verify_aud": self._audience is not None,
                                       "verify_iss": self._issuer is not None})

    def verify(self, token: str) -> Caller:
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None and now <= cached[0]:
            return cached[1]
        caller, expires = self._verify(token)
        with self._lock:
            if len(self._cache) >= TOKEN_CACHE_SIZE:
                # Oldest first (dicts keep insertion order): memory stays bounded.
                for stale in list(self._cache)[: TOKEN_CACHE_SIZE // 10]:
                    self._cache.pop(stale, None)
            self._cache[token] = (expires, caller)
        return caller

    def _verify(self, token: str) -> tuple[Caller, float]:
        try:
            claims = self._jwt.decode(token, self._key, algorithms=self._algorithms,
                                      issuer=self._issuer, audience=self._audience, leeway=CLOCK_SKEW_S)
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The player token has expired.") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("The player token is not meant for this service (audience).") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("The player token was not issued by the configured issuer.") from None
        except jwt.MissingRequiredClaimError as error:
            raise Unauthorized(f"The player token has no {error.claim!r} claim.") from None
        except jwt.InvalidAlgorithmError:
            raise Unauthorized("The player token is not signed with the configured algorithm.") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("The player token's signature is not valid.") from None
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise Unauthorized("The player token is malformed or not valid.") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not PLAYER_ID.fullmatch(subject):
            raise Unauthorized("The player token's 'sub' is not a valid player id.")
        party = claims.get("party", [])
        if party is None:
            party = []
        if (not isinstance(party, list) or len(party) > MAX_PARTY_CLAIM
                or not all(isinstance(p, str) and PLAYER_ID.fullmatch(p) for p in party)):
            raise Unauthorized("The player token's 'party' claim must be a list of player ids.")
        caller = Caller(kind="player", player_id=subject, party=frozenset(party), claims=claims,
                        limit_key=f"p:{subject}")
        # Cached until exp plus the leeway PyJWT allowed; a token without a numeric exp never
        # got here (exp is required).
        try:
            expires = float(claims["exp"]) + CLOCK_SKEW_S
        except (OverflowError, TypeError, ValueError):
            raise Unauthorized("The player token's 'exp' is not a usable time.") from None
        return caller, expires


class Authenticator:
    """Turns an Authorization header into a Caller, or raises Unauthorized."""

    def __init__(self, auth: AuthConfig | None, server_token: str | None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._backend_keys = SecretSet(auth.backend_keys) if auth and auth.backend_keys else None
        self._server_token = SecretSet([server_token]) if server_token else None
        self._players = PlayerTokens(auth, clock=clock) if auth and auth.player_jwt_key else None

    @property
    def accepts_player_tokens(self) -> bool:
        return self._players is not None

    def identify(self, header: str | None) -> Caller:
        token = bearer_token(header)
        if token is None:
            if header and header.strip():
                raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
            return ANONYMOUS
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("The bearer token is too long.")
        if self._backend_keys is not None and self._backend_keys.matches(token):
            return Caller(kind="backend", limit_key=f"b:{_name(token)}")
        if self._server_token is not None and self._server_token.matches(token):
            return Caller(kind="server", limit_key="s")
        if _looks_like_jwt(token):
            if self._players is None:
                raise Unauthorized("This service does not accept player tokens.")
            return self._players.verify(token)
        return Caller(kind="ticket", ticket_token=token, limit_key=f"t:{_name(token)}")
