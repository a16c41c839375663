"""Who may call what on the public API (SPEC "Who may call what"), and how often.

Resources ask this module one question each: `caller(req)` (who is it: 401 for a credential
that is presented and wrong), `ticket_access(caller)` (what the ticket scripts check),
`creation(caller, body)` (may this caller create this ticket, with which trusted values),
`server(caller)` / `match_reader(caller)`, and the rate-limit checks. Rights:
- a backend key: any ticket, any player, any values; reads matches;
- a player token: tickets for itself only (party members only when its `party` claim lists
  them), values named in `trusted_claims` from the token (a body setting one is refused);
  reads and acts on tickets it is in;
- a ticket token: that ticket only;
- the server token: server endpoints and matches;
- nobody: creation only when `open` (no [auth], or `open = true`: loopback demos).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import falcon

from mmserver.auth import Authenticator, Caller, Unauthorized
from mmserver.config import AuthConfig, LimitsConfig
from mmserver.http import longpoll
from mmserver.http.errors import ApiError
from mmserver.ratelimit import TokenBuckets, retry_after
from mmserver.store.tickets import BACKEND_ACCESS, player_access, token_hash

CONTEXT_KEY = "caller"


# The trustable claims (config.TRUSTABLE_CLAIMS) and the JSON type each must have.
_CLAIM_TYPES: Mapping[str, type | tuple[type, ...]] = {"mmr": (int, float), "region": str}
_CLAIM_WORDS = {"mmr": "a number", "region": "a string"}


def unauthorized(description: str) -> ApiError:
    return ApiError(401, "Unauthorized", description, headers={"WWW-Authenticate": "Bearer"})


def forbidden(description: str) -> ApiError:
    return ApiError(403, "Forbidden", description)


def too_many(wait_s: float, what: str) -> ApiError:
    return ApiError(429, "Too many requests", f"{what}; retry after the Retry-After delay.",
                    headers={"Retry-After": retry_after(wait_s)})


class RateLimits:
    """The token buckets of `[limits]`; None where a limit is not configured."""

    def __init__(self, limits: LimitsConfig, *, on_limited: Callable[[str], None] = lambda kind: None) -> None:
        self._poll = TokenBuckets(limits.poll_per_s, limits.poll_burst) if limits.poll_per_s else None
        self._create = (TokenBuckets(limits.create_per_min / 60.0, limits.create_burst)
                        if limits.create_per_min else None)
        self._backend = (TokenBuckets(limits.backend_per_s, limits.backend_burst)
                         if limits.backend_per_s else None)
        self._address = (TokenBuckets(limits.address_per_s, limits.address_burst)
                         if limits.address_per_s else None)
        self._on_limited = on_limited

    def _check(self, buckets: TokenBuckets | None, key: str, kind: str, what: str) -> None:
        if buckets is None or not key:
            return
        wait = buckets.take(key)
        if wait:
            self._on_limited(kind)
            raise too_many(wait, what)

    def request(self, caller: Caller, remote_addr: str | None) -> None:
        """Every request: per client address and per backend key, when configured."""
        self._check(self._address, remote_addr or "", "address", "Too many requests from this address")
        if caller.is_backend:
            self._check(self._backend, caller.limit_key, "backend", "Too many requests with this backend key")

    def poll(self, caller: Caller) -> None:
        """A ticket read, by a ticket token or a player (backends: request() only)."""
        if caller.kind in ("ticket", "player"):
            self._check(self._poll, caller.limit_key, "poll", "This ticket is polled too often")

    def create(self, caller: Caller) -> None:
        """A ticket creation with a player's token (backends and open callers: request() only)."""
        if caller.is_player:
            self._check(self._create, caller.limit_key, "create", "Too many tickets created by this player")


class Access:
    def __init__(self, auth: AuthConfig | None, *, server_token: str | None, limits: RateLimits) -> None:
        self._auth = auth
        self._authenticator = Authenticator(auth, server_token)
        self._servers_enabled = server_token is not None
        self._open = auth is None or auth.open
        self._trusted = tuple(auth.trusted_claims) if auth else ()
        self.limits = limits

    def caller(self, req: falcon.Request) -> Caller:
        caller = req.context.get(CONTEXT_KEY)
        if caller is None:
            try:
                caller = self._authenticator.identify(req.get_header("Authorization"))
            except Unauthorized as refusal:
                raise unauthorized(refusal.description) from None
            req.context[CONTEXT_KEY] = caller
        return caller

    # --- tickets ---

    def ticket_access(self, caller: Caller) -> str:
        """What the ticket scripts check: the token's hash, or the caller's standing."""
        if caller.kind == "ticket":
            return token_hash(caller.ticket_token or "")
        if caller.is_backend:
            return BACKEND_ACCESS
        if caller.is_player:
            return player_access(caller.player_id or "")
        if caller.is_server:
            raise forbidden("The server token does not act on tickets.")
        raise unauthorized("Send the ticket's token, a player token or a backend key as "
                           "Authorization: Bearer <token>.")

    def creation(self, caller: Caller, body: Any) -> Any:
        """The body to validate for a create by `caller`, or 401/403/422.

        A player's own id fills `player_id` when the body leaves it out, and its trusted
        claims fill their fields; a backend and an open service take the body as it is.
        """
        if caller.is_backend:
            return body
        if caller.is_player:
            return self._player_creation(caller, body)
        if caller.is_server:
            raise forbidden("The server token cannot create tickets.")
        if self._open:
            return body
        raise unauthorized("Creating a ticket needs a backend key or a player token "
                           "(Authorization: Bearer <token>).")

    def _player_creation(self, caller: Caller, body: Any) -> Any:
        if not isinstance(body, dict):
            return body  # validation answers 400
        claimed = [name for name in self._trusted if name in body]
        if claimed:
            raise ApiError(422, "Request breaks a rule",
                           f"{claimed[0]!r} is taken from the player token and must not be sent.")
        body = dict(body)
        player = body.setdefault("player_id", caller.player_id)
        if player != caller.player_id:
            raise forbidden("A player token creates tickets for its own player only.")
        party = body.get("party") or []
        if isinstance(party, list) and all(isinstance(p, str) for p in party):
            # Malformed members are validation's (400), the player itself too (422).
            outsiders = [p for p in party if p not in caller.party and p != caller.player_id]
            if outsiders:
                raise forbidden(f"{str(outsiders[0])[:64]!r} is not in the player token's party claim.")
        for name in self._trusted:
            if name not in caller.claims:
                raise forbidden(f"The player token carries no {name!r} claim, which this service trusts.")
            value = caller.claims[name]
            # The token's fault, not the body's: say so rather than let validation blame a
            # field the client never sent.
            if not isinstance(value, _CLAIM_TYPES[name]) or isinstance(value, bool):
                raise unauthorized(f"The player token's {name!r} claim must be {_CLAIM_WORDS[name]}.")
            body[name] = value
        return body

    # --- servers and matches ---

    def server(self, caller: Caller) -> None:
        if caller.is_server:
            return
        if not self._servers_enabled:
            raise ApiError(403, "Server endpoints disabled",
                           "No server token is configured on this service ([servers] token).")
        if caller.kind == "anonymous":
            raise unauthorized("Send the server token as Authorization: Bearer <token>.")
        if caller.kind == "ticket":
            raise unauthorized("The server token is not valid.")
        raise forbidden("Only game servers (the server token) may call this endpoint.")

    def match_reader(self, caller: Caller) -> None:
        if caller.is_server or caller.is_backend:
            return
        if caller.kind in ("anonymous", "ticket"):
            raise unauthorized("Send the server token or a backend key as Authorization: Bearer <token>.")
        raise forbidden("Only game servers and game backends may read a match's roster.")

    def events_reader(self, caller: Caller) -> None:
        if caller.is_backend:
            return
        if caller.kind in ("anonymous", "ticket"):
            raise unauthorized("Send a backend key as Authorization: Bearer <token>.")
        raise forbidden("Only game backends may read events.")


class AccessMiddleware:
    """Resolves the caller of every /v1 request once and applies the per-request limits."""

    def __init__(self, access: Access) -> None:
        self._access = access

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: object,
                         params: Mapping[str, Any]) -> None:
        if resource is None or not req.path.startswith("/v1/") or req.path == "/v1/openapi.json":
            return
        if longpoll.resuming(req.env):
            return  # a parked long-poll's later pass: limited once, in its first pass
        caller = self._access.caller(req)
        self._access.limits.request(caller, req.remote_addr)
