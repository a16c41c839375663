"""The public Falcon app: /v1/* for game clients and dedicated servers, /healthz, /readyz.

`create_public_app` is pure: everything arrives as an argument, so tests build the same app on
a real Store and their own Waiters and Readiness.
"""
from __future__ import annotations

import functools
import json
import logging
from importlib import resources
from typing import Any, Sequence

import falcon
import falcon.media

from mmserver.config import Config
from mmserver.http import errors
from mmserver.http.backfills import BackfillCollection, BackfillResource, MatchPlayerResource
from mmserver.http.body import BodyLimit
from mmserver.http.events import EventsResource
from mmserver.http.health import Liveness, ReadinessResource
from mmserver.http.access import Access, AccessMiddleware, RateLimits
from mmserver.http.servers import MatchFinishResource, MatchResource, ServerResource
from mmserver.http.tickets import TicketCollection, TicketResource
from mmserver.http.waiters import Waiters
from mmserver.readiness import Readiness
from mmserver.store import Store
from mmserver.store.events import EVENT_TYPES

logger = logging.getLogger(__name__)


class OpenApiDocument:
    """GET /v1/openapi.json: the document kept in the repo, served as is."""

    def __init__(self) -> None:
        self._data = load_openapi_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._data


def load_openapi_bytes() -> bytes:
    return resources.files("mmserver.http").joinpath("openapi.json").read_bytes()


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's parser accepts them unless told otherwise.
    raise ValueError(f"{name} is not valid JSON")


class ApiCounters:
    """What the public app counts besides requests (metrics.py implements it)."""

    def rate_limited(self, kind: str) -> None: ...

    def longpoll_answered_early(self) -> None: ...


def create_public_app(*, store: Store, waiters: Waiters, readiness: Readiness, config: Config,
                      middleware: Sequence[object] = (), counters: ApiCounters | None = None) -> falcon.App:
    counters = counters or ApiCounters()
    access = Access(config.auth, server_token=config.servers.token,
                    limits=RateLimits(config.limits, on_limited=counters.rate_limited))
    # Outer middleware (metrics) first, so that it sees the final status of every request;
    # the caller is known (401 for a wrong credential) before a body is read.
    app = falcon.App(middleware=[*middleware, AccessMiddleware(access), BodyLimit(config.max_body_bytes)])
    json_handler = falcon.media.JSONHandler(
        loads=functools.partial(json.loads, parse_constant=_refuse_constant),
    )
    # JSON only: without this Falcon would also parse form and multipart bodies.
    app.req_options.media_handlers = falcon.media.Handlers({falcon.MEDIA_JSON: json_handler})
    app.resp_options.media_handlers = falcon.media.Handlers({falcon.MEDIA_JSON: json_handler})
    app.req_options.strip_url_path_trailing_slash = True
    errors.install(app)

    tickets = TicketResource(store, waiters, readiness, access,
                             on_busy_longpoll=counters.longpoll_answered_early)
    app.add_route("/v1/tickets", TicketCollection(store, config.modes, readiness, access, config.regions))
    app.add_route("/v1/tickets/{ticket_id}", tickets)
    app.add_route("/v1/tickets/{ticket_id}/accept", tickets, suffix="accept")
    app.add_route("/v1/tickets/{ticket_id}/decline", tickets, suffix="decline")
    app.add_route("/v1/servers/{server_id}", ServerResource(store, access, config.regions))
    app.add_route("/v1/matches/{match_id}", MatchResource(store, access))
    app.add_route("/v1/matches/{match_id}/finish", MatchFinishResource(store, access))
    app.add_route("/v1/matches/{match_id}/backfill", BackfillCollection(store, access, config.modes))
    app.add_route("/v1/matches/{match_id}/backfill/{backfill_id}", BackfillResource(store, access))
    app.add_route("/v1/matches/{match_id}/players/{player_id}", MatchPlayerResource(store, access))
    app.add_route("/v1/events", EventsResource(store, waiters, access, EVENT_TYPES, config.modes,
                                               on_busy_longpoll=counters.longpoll_answered_early))
    app.add_route("/v1/openapi.json", OpenApiDocument())
    app.add_route("/healthz", Liveness())
    app.add_route("/readyz", ReadinessResource(readiness))
    return app
