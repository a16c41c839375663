"""Prometheus metrics of one replica, served on the control plane's /metrics.

Everything lives in this object's own CollectorRegistry, never prometheus_client's global one:
tests and several Replica instances in one process then never collide, and /metrics shows only
what this replica registered.

Three kinds of sources:
- events pushed by the code that sees them (HTTP requests through a Falcon middleware, ticks,
  shutdown requests): counters and histograms of this replica;
- state pulled at scrape time (`watch`): queue depths, sessions, servers, the subscriber, and the
  ticket outcome counters `mmserver_tickets_total{mode,outcome}`. Store stats cost a Redis round
  trip, so they are cached for a short while: a burst of scrapes (several Prometheus servers, a
  dashboard) costs one call, and a Redis that is away costs one timeout per period instead of one
  per scrape.
- the process itself (CPU, memory, open files) from prometheus_client's standard collectors.

Ticket outcomes are counted in Redis by the Lua script that makes each transition (the store's
`mm:o` hash), so they are fleet-wide: every replica reports the same values, which survive
replica restarts. Aggregate them across replicas with max (or any one replica), never sum. While
Redis is away they are left out of the scrape rather than reported as 0 (which would read as a
counter reset).

Every label takes a bounded set of values: routes are URI templates, methods, outcomes and
reasons come from fixed lists, anything else is counted as "other".
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import falcon
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mmserver.http import longpoll
from mmserver.shutdown import STOP_KINDS

if TYPE_CHECKING:
    from mmserver.ticker import TickResult

logger = logging.getLogger(__name__)

TICKET_OUTCOMES = ("created", "matched", "assigned", "finished", "cancelled", "expired")
SHUTDOWN_REASONS = STOP_KINDS
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Fields of the ticker's TickResult and the counters they feed.
TICK_COUNTS = {
    "matches_claimed": ("mmserver_matches_claimed", "Matches claimed by this replica's ticks"),
    "claim_conflicts": ("mmserver_claim_conflicts",
                        "Proposed matches another replica or client changed first (claim refused)"),
    "match_function_errors": ("mmserver_match_function_errors",
                              "Ticks in which a mode's match function raised or returned a bad "
                              "proposal (that mode skipped the tick)"),
    "backfilled": ("mmserver_backfill_fills",
                   "Queued tickets this replica's ticks placed into running matches' backfills"),
    "deadlines_processed": ("mmserver_deadlines_processed",
                            "Ready-check and allocation deadlines handled by this replica's ticks"),
    "answers_reused": ("mmserver_blocked_answers_reused",
                       "Waiting tickets of modes with rules whose blocked_by a tick reused from an "
                       "earlier one, nothing near them in the queue having changed"),
}
QUEUE_STATES = ("queued", "matched", "assigned")
RATE_LIMITS = ("poll", "create", "backend", "address")
SESSION_STATES = ("accepting", "allocating", "assigned")
SERVER_STATES = ("free", "busy", "stale")
UNMATCHED_ROUTE = "unmatched"
OTHER = "other"

# Long-polls wait up to 30 s, so the HTTP buckets go well past prometheus_client's 10 s default.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
# A tick is a few Redis round trips: milliseconds when healthy, seconds when Redis struggles.
# Webhook outcomes (mmserver/webhooks/worker.py) and commit-to-2xx latency: milliseconds when the
# receiver is healthy, up to the retry schedule (minutes) when it was not.
WEBHOOK_OUTCOMES = ("delivered", "failed", "dead", "dropped", "skipped")
WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._http_requests = Counter(
            "mmserver_http_requests", "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"], registry=self.registry)
        self._http_duration = Histogram(
            "mmserver_http_request_duration_seconds",
            "Time from request start to response ready (long-polls included)",
            ["route", "method"], buckets=HTTP_BUCKETS, registry=self.registry)
        self._tick_duration = Histogram(
            "mmserver_tick_duration_seconds", "Duration of matchmaker ticks",
            buckets=TICK_BUCKETS, registry=self.registry)
        self._tick_errors = Counter(
            "mmserver_tick_errors", "Matchmaker ticks that raised", registry=self.registry)
        self._tick_counts = {
            key: Counter(name, doc, registry=self.registry) for key, (name, doc) in TICK_COUNTS.items()
        }
        self._rate_limited = Counter(
            "mmserver_rate_limited", "Requests refused with 429, by limit (poll, create, backend, address)",
            ["limit"], registry=self.registry)
        for kind in RATE_LIMITS:
            self._rate_limited.labels(limit=kind)
        self._longpolls_early = Counter(
            "mmserver_longpolls_answered_early",
            "Long-polls answered at once (with Retry-After) because this replica held its maximum of waiters",
            registry=self.registry)
        self._shutdowns = Counter(
            "mmserver_shutdowns", "Stop requests, by kind of reason", ["reason"], registry=self.registry)
        # Every fixed label value exists from the start, at 0, so rate() and absent() behave
        # before the first event.
        for reason in SHUTDOWN_REASONS:
            self._shutdowns.labels(reason=reason)
        self._watch: StateCollector | None = None
        self._webhook_deliveries = Counter(
            "mmserver_webhook_deliveries",
            "Webhook delivery outcomes by this replica: delivered (2xx), failed (an attempt that "
            "will be retried or buried), dead (became a dead letter), dropped (left the event log "
            "before delivery), skipped (type not in [webhooks] events)",
            ["outcome"], registry=self.registry)
        for outcome in WEBHOOK_OUTCOMES:
            self._webhook_deliveries.labels(outcome=outcome)
        self._webhook_latency = Histogram(
            "mmserver_webhook_delivery_latency_seconds",
            "From the transition's commit (the event id's time, Redis's clock) to the receiver's 2xx",
            buckets=WEBHOOK_BUCKETS, registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every metric, and its content type (the /metrics answer)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # --- pushed events ---

    def http_middleware(self) -> "HttpMetricsMiddleware":
        """A Falcon WSGI middleware recording every request; put it first in the list so that
        its process_response sees the final status."""
        return HttpMetricsMiddleware(self._http_requests, self._http_duration)

    def observe_tick(self, result: TickResult, duration_s: float) -> None:
        """Record one completed tick: its duration and the counts of its TickResult."""
        self._tick_duration.observe(max(0.0, duration_s))
        for field, counter in self._tick_counts.items():
            count = getattr(result, field)
            if count > 0:
                counter.inc(count)

    def timed_tick(self, tick: Callable[[], TickResult]) -> Callable[[], TickResult]:
        """Wrap the ticker's tick for the scheduler: times it, records its result, counts
        ticks that raise (and re-raises: the scheduler keeps its own error record)."""

        def run() -> TickResult:
            started = time.monotonic()
            try:
                result = tick()
            except Exception:
                self._tick_errors.inc()
                raise
            self.observe_tick(result, time.monotonic() - started)
            return result

        return run

    def rate_limited(self, kind: str) -> None:
        self._rate_limited.labels(limit=_bounded(kind, RATE_LIMITS, "rate limit")).inc()

    def longpoll_answered_early(self) -> None:
        self._longpolls_early.inc()

    def shutdown_requested(self, reason_kind: str) -> None:
        self._shutdowns.labels(reason=_bounded(reason_kind, SHUTDOWN_REASONS, "shutdown reason")).inc()

    # --- pulled state ---

    def watch(self, *, stats: Callable[[], dict], subscriber_status: Callable[[], dict],
              stats_max_age_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        """Report store stats (state gauges and the fleet-wide ticket outcome counters) and the
        subscriber's status at every scrape (once per replica)."""
        if self._watch is not None:
            raise RuntimeError("watch() was already called on this Metrics")
        if stats_max_age_s < 0:
            raise ValueError(f"stats_max_age_s must not be negative, got {stats_max_age_s}")
        self._watch = StateCollector(stats, subscriber_status, stats_max_age_s, clock)
        self.registry.register(self._watch)


    def webhook_delivery(self, outcome: str, count: int = 1) -> None:
        self._webhook_deliveries.labels(outcome=_bounded(outcome, WEBHOOK_OUTCOMES, "webhook outcome")).inc(count)

    def webhook_latency(self, seconds: float) -> None:
        self._webhook_latency.observe(max(0.0, seconds))

    def watch_webhooks(self, stats: Callable[[], dict | None]) -> None:
        """Report the fleet-wide delivery state (store/deliveries.py `stats`, through a cached
        or bounded read: None when Redis did not answer) at every scrape."""
        self.registry.register(WebhookStateCollector(stats))

    def watch_readiness(self, check: Callable[[], tuple[bool, str]]) -> None:
        """Report `check()` (Readiness.check: the answer behind /readyz) as `mmserver_ready`
        at every scrape, so that an alert can count the replicas a load balancer would use."""
        self.registry.register(ReadinessCollector(check))

    def watch_view_cache(self, status: Callable[[], dict]) -> None:
        """Report the ticket view cache's counters (store/viewcache.py `status`) at every scrape."""
        self.registry.register(ViewCacheCollector(status))

    def watch_logs(self, dropped: Callable[[], int]) -> None:
        """Report `dropped()` (log records dropped on a full log queue, logs.LogPipeline) as
        `mmserver_log_records_dropped_total` at every scrape."""
        self.registry.register(LogDropsCollector(dropped))


class ReadinessCollector(Collector):
    def __init__(self, check: Callable[[], tuple[bool, str]]) -> None:
        self._check = check

    def collect(self) -> Iterator[Metric]:
        ready, _reason = self._check()
        family = GaugeMetricFamily("mmserver_ready",
                                   "1 while /readyz answers 200 (started, not draining, Redis answers)")
        family.add_metric([], 1.0 if ready else 0.0)
        yield family


class ViewCacheCollector(Collector):
    """This replica's ticket view cache: reads answered without Redis, and why not."""

    def __init__(self, status: Callable[[], dict]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        status = _mapping(self._status())
        reads = CounterMetricFamily("mmserver_view_cache_reads",
                                    "Ticket reads by whether this replica's view cache answered them",
                                    labels=["result"])
        reads.add_metric(["hit"], _number(status.get("hits")))
        reads.add_metric(["miss"], _number(status.get("misses")))
        yield reads
        invalidations = CounterMetricFamily("mmserver_view_cache_invalidations",
                                            "Cached views dropped because their ticket changed")
        invalidations.add_metric([], _number(status.get("invalidations")))
        yield invalidations
        entries = GaugeMetricFamily("mmserver_view_cache_entries", "Ticket views this replica holds")
        entries.add_metric([], _number(status.get("entries")))
        yield entries
        live = GaugeMetricFamily("mmserver_view_cache_live",
                                 "1 while the cache serves reads (its subscriber connected)")
        live.add_metric([], 1.0 if status.get("live") else 0.0)
        yield live


class LogDropsCollector(Collector):
    def __init__(self, dropped: Callable[[], int]) -> None:
        self._dropped = dropped

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("mmserver_log_records_dropped",
                                     "Log records dropped because the log queue was full "
                                     "(the output stream slow or blocked)")
        family.add_metric([], float(self._dropped()))
        yield family


class WebhookStateCollector(Collector):
    """Gauges of the delivery state, left out of a scrape while Redis does not answer."""

    def __init__(self, stats: Callable[[], dict | None]) -> None:
        self._stats = stats

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        try:
            stats = self._stats()
        except Exception as error:  # Redis away: the rest of the scrape still answers
            logger.debug("webhook stats for /metrics failed: %r", error)
            return
        if not stats:
            return
        lag, pending, dead = self._families()
        lag.add_metric([], _number(stats.get("lag_s")))
        pending.add_metric([], _number(stats.get("pending")) + _number(stats.get("replays_waiting")))
        dead.add_metric([], _number(stats.get("dead_letters")))
        yield from (lag, pending, dead)

    @staticmethod
    def _families() -> tuple[Metric, ...]:
        return (
            GaugeMetricFamily("mmserver_webhook_lag_seconds",
                              "Age of the oldest event not yet delivered (0: none), fleet-wide"),
            GaugeMetricFamily("mmserver_webhook_pending",
                              "Events read and not yet delivered (in flight or waiting for a retry) "
                              "plus replays waiting, fleet-wide"),
            GaugeMetricFamily("mmserver_webhook_dead_letters", "Dead letters kept, fleet-wide"),
        )


_STARTED = "mmserver.metrics_started"


class HttpMetricsMiddleware:
    """Counts and times every request by route template, never by raw path: ticket and match
    ids in paths would make one time series per ticket."""

    def __init__(self, requests: Counter, duration: Histogram) -> None:
        self._requests = requests
        self._duration = duration
        # The label children of each (route, method, status), looked up once: `labels()` costs
        # a lock and several validations per call, on every request. The keys are bounded like
        # the labels themselves; two threads filling the same key store the same children.
        self._children: dict[tuple[str | None, str, int], tuple[Counter, Histogram]] = {}

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        # In the environ, which a parked long-poll keeps across its passes (longpoll.py): its
        # duration is from its first pass to its answer.
        req.env.setdefault(_STARTED, time.monotonic())

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: object,
                         req_succeeded: bool) -> None:
        if longpoll.parked(req.env):
            return  # a pass that parked its long-poll: no answer yet, the last pass counts it
        method = req.method
        # A client picks the method: anything unexpected is one key, never one per spelling.
        key = (req.uri_template, method if method in HTTP_METHODS else OTHER, resp.status_code)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._label(*key)
        children[0].inc()
        started = req.env.get(_STARTED)
        # Absent only if another middleware's process_request failed before ours ran.
        if started is not None:
            children[1].observe(time.monotonic() - started)

    def _label(self, template: str | None, method: str, status: int) -> tuple[Counter, Histogram]:
        route = template or UNMATCHED_ROUTE
        return (self._requests.labels(route=route, method=method, status=str(status)),
                self._duration.labels(route=route, method=method))


class StateCollector(Collector):
    """A custom collector: builds the state gauges afresh at every scrape."""

    def __init__(self, stats: Callable[[], dict], subscriber_status: Callable[[], dict],
                 max_age_s: float, clock: Callable[[], float]) -> None:
        self._stats = stats
        self._subscriber_status = subscriber_status
        self._max_age_s = max_age_s
        self._clock = clock
        # waitress serves scrapes on several threads: the lock makes concurrent scrapes share
        # one stats() call instead of each making their own.
        self._lock = threading.Lock()
        self._cached_at: float | None = None
        self._cached: dict | None = None  # None: the last stats() call failed

    def describe(self) -> Iterable[Metric]:
        # Names only, so that registering does not call stats() (a Redis round trip).
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        stats = self._read_stats()
        (queues, oldest, blocked, backfills, tickets, sessions, servers, connected, reconnects,
         redis_up) = self._families()
        redis_up.add_metric([], 1.0 if stats is not None else 0.0)
        if stats is not None:
            for mode, queue in sorted(_mapping(stats.get("queues")).items()):
                queue = _mapping(queue)
                for state in QUEUE_STATES:
                    queues.add_metric([str(mode), state], _number(queue.get(state)))
                # An empty queue has no oldest ticket: 0 keeps "oldest wait > N" alerts simple.
                oldest.add_metric([str(mode)], _number(queue.get("oldest_wait_s")))
                # Rule names come from the configuration (and the fixed names): bounded labels.
                for rule, count in sorted(_mapping(queue.get("blocked_by")).items()):
                    blocked.add_metric([str(mode), str(rule)], _number(count))
                backfills.add_metric([str(mode)], _number(queue.get("backfills_open")))
            for mode, outcomes in sorted(_mapping(stats.get("outcomes")).items()):
                outcomes = _mapping(outcomes)
                for outcome in TICKET_OUTCOMES:
                    tickets.add_metric([str(mode), outcome], _number(outcomes.get(outcome)))
            session_counts = _mapping(stats.get("sessions"))
            for state in SESSION_STATES:
                sessions.add_metric([state], _number(session_counts.get(state)))
            server_counts = _mapping(stats.get("servers"))
            for state in SERVER_STATES:
                servers.add_metric([state], _number(server_counts.get(state)))
            yield from (queues, oldest, blocked, backfills, tickets, sessions, servers)
        status = self._read_subscriber()
        if status is not None:
            connected.add_metric([], 1.0 if status.get("connected") else 0.0)
            reconnects.add_metric([], _number(status.get("reconnects_total")))
            yield from (connected, reconnects)
        yield redis_up

    def _read_stats(self) -> dict | None:
        with self._lock:
            now = self._clock()
            if self._cached_at is None or now - self._cached_at >= self._max_age_s:
                try:
                    self._cached = _mapping(self._stats())
                except Exception as error:  # Redis away: the scrape still answers, redis_up 0
                    logger.debug("store stats for /metrics failed: %r", error)
                    self._cached = None
                # A failure is cached too: a burst of scrapes while Redis is away must not wait
                # for one connection timeout each.
                self._cached_at = now
            return self._cached

    def _read_subscriber(self) -> dict | None:
        try:
            return _mapping(self._subscriber_status())
        except Exception:  # a bug elsewhere must not turn every scrape into a 500
            logger.exception("subscriber status for /metrics failed")
            return None

    @staticmethod
    def _families() -> tuple[Metric, ...]:
        return (
            GaugeMetricFamily("mmserver_queue_tickets", "Tickets of each mode, by state",
                              labels=["mode", "state"]),
            GaugeMetricFamily("mmserver_queue_oldest_wait_seconds",
                              "Wait of the oldest queued ticket of each mode (0: queue empty)",
                              labels=["mode"]),
            GaugeMetricFamily("mmserver_queue_blocked_tickets",
                              "Queued tickets of each mode left unmatched at the last tick, by "
                              "what kept them waiting (a rule's name, mmr, latency, roles, players)",
                              labels=["mode", "rule"]),
            GaugeMetricFamily("mmserver_backfills_open",
                              "Backfill requests of running matches not yet filled, by mode",
                              labels=["mode"]),
            CounterMetricFamily("mmserver_tickets",
                                "Tickets that reached each outcome, fleet-wide (read from Redis: "
                                "every replica reports the same value)",
                                labels=["mode", "outcome"]),
            GaugeMetricFamily("mmserver_sessions", "Loading sessions, by state", labels=["state"]),
            GaugeMetricFamily("mmserver_servers", "Dedicated servers, by state", labels=["state"]),
            GaugeMetricFamily("mmserver_subscriber_connected",
                              "1 while the pub/sub subscriber is subscribed"),
            CounterMetricFamily("mmserver_subscriber_reconnects",
                                "Pub/sub reconnects after a lost connection"),
            GaugeMetricFamily("mmserver_redis_up", "1 if the last store stats call answered"),
        )


def _bounded(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value in allowed:
        return value
    logger.warning("unknown %s %r counted as %r", what, value, OTHER)
    return OTHER


def _mapping(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value)
