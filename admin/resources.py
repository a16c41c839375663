"""Thin control-plane resources: validate the request, call the Control, return its plain data.

Like gunicorn's ctl handlers, nothing here decides anything: shutdown, drain and undrain call
the same service methods a signal or the stop sequence would, and the match and player calls
hand the store's answer back as it is. Errors are the public API's (mmserver.http.errors): a
store's NotFound is a 404, RedisUnavailable a 503 with Retry-After, a bad id a 400 or 404.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable, Protocol

import falcon

from mmserver.decimal_text import parse_decimal
from mmserver.http import validation
from mmserver.http.errors import ApiError
from mmserver.http.validation import BadRequest
from mmserver.store.events import is_stream_id

logger = logging.getLogger(__name__)

MAX_REASON_CHARS = 200
MAX_DEAD_LETTER_PAGE = 1000
MAX_MATCH_PAGE = 200  # each listed match is one script call: the page stays cheap
MAX_DEAD_LETTER_IDS = 1000  # ids named in one replay or discard


class WebhooksNotConfigured(ApiError):
    def __init__(self) -> None:
        super().__init__(404, "Webhooks not configured",
                         "This deployment has no [webhooks] table: there are no dead letters.")


class Control(Protocol):
    """What the control plane needs from the service (implemented by mmserver/control.py).

    The match and player methods raise mmserver.store.NotFound when there is nothing by that
    id, and mmserver.store.RedisUnavailable when Redis cannot answer now.
    """

    def request_shutdown(self, reason: str) -> dict:
        """Start the stop sequence (exit status 1); returns {"state": "stopping", "reason", "exit_status"}."""
        ...

    def drain(self) -> dict:
        """Stop taking new tickets and report not-ready; returns {"state": "draining", ...}."""
        ...

    def undrain(self) -> dict:
        """Take new tickets again after a drain; readiness is back to ready if Redis answers.

        Returns {"state": "running", "accepting_tickets": True, ...}. While the stop sequence
        runs nothing changes, and the answer says so: {"state": "stopping",
        "accepting_tickets": False, ...}.
        """
        ...

    def status(self) -> dict:
        """Lifecycle state, workers, queues, sessions, servers, replicas: plain JSON-ready data."""
        ...

    def match(self, match_id: str) -> dict:
        """One match as the store sees it: the roster document of GET /v1/matches/{id}
        (mode, region, state, server, created_at, teams of players)."""
        ...

    def running_matches(self, limit: int) -> dict:
        """Up to `limit` running (assigned) matches, newest first: {"matches": [documents as
        match() returns them], "total": how many are running}."""
        ...

    def finish_match(self, match_id: str) -> dict:
        """End a match as its game server would, with the reason "finished by operator": its
        server freed, its tickets finished. Returns {"match_id", "status", "players"}."""
        ...

    def player(self, player_id: str) -> dict:
        """What one player is in now: {"player_id", "ticket": the view of its live ticket,
        with its loading session or assignment}; NotFound when it holds no live ticket."""
        ...

    def release_player(self, player_id: str) -> dict:
        """Free a player: its live ticket is cancelled, or it leaves its match. Returns
        {"player_id", "released": True, "ticket": the ticket's view after it}."""
        ...

    def dead_letters(self, after: str | None, limit: int) -> dict:
        """Webhook dead letters after the dead-letter id `after`, oldest first: {"dead_letters":
        [{"id", "event", "attempts", "last_error", "dead_at"}], "next", "total"}. Raises
        WebhooksNotConfigured without a [webhooks] table."""
        ...

    def replay_dead_letters(self, ids: list[str] | None) -> dict:
        """Deliver dead letters again (all when `ids` is None): {"replayed", "not_found"}."""
        ...

    def discard_dead_letters(self, ids: list[str] | None) -> dict:
        """Delete dead letters for good (all when `ids` is None): {"discarded"}."""
        ...


Metrics = Callable[[], tuple[bytes, str]]


def send_json(resp: falcon.Response, data: Any, status: int = 200) -> None:
    # Serialized here rather than through resp.media: Falcon renders media after the error
    # handlers have run, so a value json cannot encode would escape as a bare 500 page.
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = json.dumps(data).encode("utf-8")


def read_json_object(req: falcon.Request, *, optional: bool = False) -> dict:
    """The request body as a JSON object; 400 if malformed, or absent unless `optional` (then
    an empty body is {}).

    BodyLimit has already refused a body over the limit and buffered the rest.
    """
    raw = req.bounded_stream.read()
    if not raw.strip():
        if optional:
            return {}
        raise BadRequest("A JSON body is required.")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("The request body is not valid JSON.") from None
    except RecursionError:  # '[' ten thousand times fits in the body limit
        raise BadRequest("The JSON body is nested too deeply.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def validate_reason(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("'reason' is required: a non-empty string saying why the replica stops.")
    reason = value.strip()
    if len(reason) > MAX_REASON_CHARS:
        raise BadRequest(f"'reason' is longer than {MAX_REASON_CHARS} characters.")
    # The reason is written to the log and to Sentry: no line breaks or other control
    # characters that could forge or garble a log line.
    if any(not char.isprintable() for char in reason):
        raise BadRequest("'reason' must not contain control characters.")
    return reason


def checked_match_id(value: str) -> str:
    """A match id from the path; one the store could not have generated cannot exist: 404."""
    if not validation.is_generated_id(value):
        raise ApiError(404, "Match not found", "No match has this id.")
    return value


def checked_player_id(value: str) -> str:
    """A player id from the path: 400 outside the alphabet players are created with."""
    return validation.player_id(value)


class ShutdownResource:
    def __init__(self, control: Control) -> None:
        self._control = control

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        reason = validate_reason(read_json_object(req).get("reason"))
        logger.warning("admin shutdown requested from %s: %s", req.remote_addr, reason)
        send_json(resp, self._control.request_shutdown(reason), status=202)


class DrainResource:
    def __init__(self, control: Control) -> None:
        self._control = control

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        # No body is expected; whatever was sent (within the limit) is ignored.
        logger.warning("admin drain requested from %s", req.remote_addr)
        send_json(resp, self._control.drain())


class UndrainResource:
    def __init__(self, control: Control) -> None:
        self._control = control

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        logger.warning("admin undrain requested from %s", req.remote_addr)
        send_json(resp, self._control.undrain())


class StatusResource:
    def __init__(self, control: Control) -> None:
        self._control = control

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, self._control.status())


def single_param(req: falcon.Request, name: str) -> str | None:
    """A query parameter given at most once: which of two values was meant is not ours to guess
    (the public API's /v1/events refuses the same)."""
    value = req.params.get(name)
    if isinstance(value, list):
        raise BadRequest(f"{name!r} is given more than once.")
    return value


def page_limit(req: falcon.Request, default: int, maximum: int) -> int:
    raw = single_param(req, "limit") or str(default)
    limit = parse_decimal(raw) or 0
    if not 1 <= limit <= maximum:
        raise BadRequest(f"'limit' must be an integer from 1 to {maximum}.")
    return limit


class MatchesResource:
    """GET /admin/matches?limit=: the running matches (the console's list)."""

    def __init__(self, control: Control) -> None:
        self._control = control

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, self._control.running_matches(page_limit(req, 50, MAX_MATCH_PAGE)))


class MatchResource:
    """GET /admin/matches/{match_id}; POST /admin/matches/{match_id}/finish"""

    def __init__(self, control: Control) -> None:
        self._control = control

    def on_get(self, req: falcon.Request, resp: falcon.Response, match_id: str) -> None:
        send_json(resp, self._control.match(checked_match_id(match_id)))

    def on_post_finish(self, req: falcon.Request, resp: falcon.Response, match_id: str) -> None:
        match_id = checked_match_id(match_id)
        logger.warning("admin finish of match %s requested from %s", match_id, req.remote_addr)
        send_json(resp, self._control.finish_match(match_id))


class PlayerResource:
    """GET and DELETE /admin/players/{player_id}"""

    def __init__(self, control: Control) -> None:
        self._control = control

    def on_get(self, req: falcon.Request, resp: falcon.Response, player_id: str) -> None:
        send_json(resp, self._control.player(checked_player_id(player_id)))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, player_id: str) -> None:
        player_id = checked_player_id(player_id)
        logger.warning("admin release of player %s requested from %s", player_id, req.remote_addr)
        send_json(resp, self._control.release_player(player_id))


class MetricsResource:
    """Prometheus scrape endpoint; open like /healthz, since it carries no secrets."""

    def __init__(self, metrics: Metrics | None) -> None:
        self._metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._metrics is None:
            raise ApiError(404, "Not Found", "Metrics are not enabled on this replica.")
        data, content_type = self._metrics()
        resp.data = data
        resp.content_type = content_type


def _dead_letter_ids(body: dict) -> list[str] | None:
    """`{}`: every dead letter (None); `{"ids": [...]}`: those (dead-letter ids, "<ms>-<seq>")."""
    unknown = set(body) - {"ids"}
    if unknown:
        raise BadRequest(f"Unknown field {sorted(unknown)[0]!r}: the body is {{}} (all) or {{\"ids\": [...]}}.")
    if "ids" not in body:
        return None
    ids = body["ids"]
    if not isinstance(ids, list) or not ids or len(ids) > MAX_DEAD_LETTER_IDS:
        raise BadRequest(f"'ids' must be a list of 1 to {MAX_DEAD_LETTER_IDS} dead-letter ids.")
    for value in ids:
        if not is_stream_id(value):
            raise BadRequest("Each id must be a dead-letter id such as \"1718000000000-0\".")
    return list(dict.fromkeys(ids))


class DeadLettersResource:
    """GET and DELETE /admin/webhooks/dead; POST /admin/webhooks/dead/replay"""

    def __init__(self, control: Control) -> None:
        self._control = control

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        after = single_param(req, "after")
        if after is not None and not is_stream_id(after):
            raise BadRequest("'after' must be a dead-letter id such as \"1718000000000-0\".")
        send_json(resp, self._control.dead_letters(after, page_limit(req, 100, MAX_DEAD_LETTER_PAGE)))

    def on_post_replay(self, req: falcon.Request, resp: falcon.Response) -> None:
        ids = _dead_letter_ids(read_json_object(req))
        logger.warning("admin replay of %s dead letters requested from %s",
                       "all" if ids is None else len(ids), req.remote_addr)
        send_json(resp, self._control.replay_dead_letters(ids))

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        ids = _dead_letter_ids(read_json_object(req, optional=True))
        logger.warning("admin discard of %s dead letters requested from %s",
                       "all" if ids is None else len(ids), req.remote_addr)
        send_json(resp, self._control.discard_dead_letters(ids))
