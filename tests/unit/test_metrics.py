"""Metrics of one replica: a real Falcon app with the middleware, the real exposition parser."""
from __future__ import annotations

import dataclasses
import threading

import falcon
import falcon.testing
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from mmserver.http import longpoll
from mmserver.metrics import TICK_COUNTS, Metrics
from mmserver.ticker import TickResult
from mmserver_admin.app import create_admin_app
from tests.admin.controls import TOKEN, RecordingControl

FULL_STATS = {
    "queues": {
        "duel": {"queued": 3, "oldest_wait_s": 12.5, "matched": 2, "assigned": 4},
        "squad": {"queued": 0, "oldest_wait_s": None, "matched": 0, "assigned": 8},
    },
    "outcomes": {
        "duel": {"created": 40, "matched": 30, "assigned": 24, "finished": 20, "cancelled": 5,
                 "expired": 3},
        "squad": {"created": 8, "matched": 8, "assigned": 8},
    },
    "sessions": {"accepting": 1, "allocating": 2, "assigned": 5},
    "servers": {"free": 6, "busy": 3, "stale": 1},
}
OUTCOMES = ("created", "matched", "assigned", "finished", "cancelled", "expired")
SUBSCRIBER = {"alive": True, "connected": True, "reconnect_attempts": 0, "reconnects_total": 4,
              "last_error": None}


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} from the rendered text, through the real parser."""
    data, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(data.decode("utf-8")):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


class Things:
    def on_get(self, req: falcon.Request, resp: falcon.Response, thing_id: str) -> None:
        resp.media = {"id": thing_id}

    def on_post(self, req: falcon.Request, resp: falcon.Response, thing_id: str) -> None:
        raise falcon.HTTPConflict(title="busy")


class Parking:
    """A resource whose first pass parks (as a long-poll does under the HTTP server) and whose
    second pass, with the same environ, answers."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if longpoll.PARK in req.env:
            del req.env[longpoll.PARK]
            resp.media = {"answered": True}
        else:
            req.env[longpoll.PARK] = (None, 1.0)


class Broken:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise RuntimeError("a bug")


def app_with(metrics: Metrics) -> falcon.testing.TestClient:
    app = falcon.App(middleware=[metrics.http_middleware()])
    app.add_route("/v1/things/{thing_id}", Things())
    app.add_route("/broken", Broken())
    app.add_route("/parking", Parking())
    return falcon.testing.TestClient(app)


# --- HTTP middleware ---

def test_requests_counted_by_route_template_method_and_status():
    metrics = Metrics()
    client = app_with(metrics)
    for thing in ("a", "b", "c"):
        assert client.simulate_get(f"/v1/things/{thing}").status_code == 200
    assert client.simulate_post("/v1/things/a").status_code == 409
    assert client.simulate_get("/nowhere/at/all").status_code == 404
    assert client.simulate_get("/nowhere/else").status_code == 404
    assert client.simulate_get("/broken").status_code == 500

    found = samples(metrics)
    route = "/v1/things/{thing_id}"
    total = "mmserver_http_requests_total"
    assert found[(total, (("method", "GET"), ("route", route), ("status", "200")))] == 3
    assert found[(total, (("method", "POST"), ("route", route), ("status", "409")))] == 1
    assert found[(total, (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 2
    assert found[(total, (("method", "GET"), ("route", "/broken"), ("status", "500")))] == 1
    # Raw paths never become label values: one series per template, whatever the ids.
    routes = {dict(labels)["route"] for (name, labels) in found if name == total}
    assert routes == {route, "unmatched", "/broken"}

    count = "mmserver_http_request_duration_seconds_count"
    assert found[(count, (("method", "GET"), ("route", route)))] == 3
    assert found[(count, (("method", "GET"), ("route", "unmatched")))] == 2
    inf = found[("mmserver_http_request_duration_seconds_bucket",
                 (("le", "+Inf"), ("method", "GET"), ("route", route)))]
    assert inf == 3


def test_a_parked_long_poll_is_counted_once_when_answered_with_its_whole_duration():
    metrics = Metrics()
    app = app_with(metrics).app
    env = falcon.testing.create_environ("/parking")
    collected = []
    app(env, lambda status, headers: collected.append(status))  # parks: not counted
    total = "mmserver_http_requests_total"
    key = (total, (("method", "GET"), ("route", "/parking"), ("status", "200")))
    assert key not in samples(metrics)
    started = env["mmserver.metrics_started"]
    app(env, lambda status, headers: collected.append(status))  # the same request, answered
    assert samples(metrics)[key] == 1
    assert env["mmserver.metrics_started"] == started  # timed from the first pass
    assert samples(metrics)[("mmserver_http_request_duration_seconds_count",
                             (("method", "GET"), ("route", "/parking")))] == 1


# wsgiref's validator (behind TestClient) warns about the made-up methods: that is the point.
@pytest.mark.filterwarnings("ignore::wsgiref.validate.WSGIWarning")
def test_unknown_methods_share_one_label_value():
    metrics = Metrics()
    client = app_with(metrics)
    client.simulate_request("BREW", "/v1/things/a")
    client.simulate_request("WHEN", "/v1/things/a")
    methods = {dict(labels)["method"] for (name, labels) in samples(metrics)
               if name == "mmserver_http_requests_total"}
    assert methods == {"other"}


def test_own_registry_never_the_global_one():
    first, second = Metrics(), Metrics()  # a second instance would collide in a shared registry
    assert first.registry is not REGISTRY and first.registry is not second.registry
    first.shutdown_requested("admin")
    assert value(first, "mmserver_shutdowns_total", reason="admin") == 1
    assert value(second, "mmserver_shutdowns_total", reason="admin") == 0
    assert REGISTRY.get_sample_value("mmserver_shutdowns_total", {"reason": "admin"}) is None


# --- pushed events ---

def test_shutdown_reasons_start_at_zero_and_stay_bounded():
    metrics = Metrics()
    metrics.shutdown_requested("admin")
    metrics.shutdown_requested("because I said so")

    assert value(metrics, "mmserver_shutdowns_total", reason="admin") == 1
    assert value(metrics, "mmserver_shutdowns_total", reason="signal") == 0
    assert value(metrics, "mmserver_shutdowns_total", reason="other") == 1
    assert value(metrics, "mmserver_shutdowns_total", reason="because I said so") is None


def test_no_per_replica_ticket_counter():
    """Ticket outcomes have one source, the fleet-wide counts in Redis (see watch): a replica
    that cannot read them exposes no ticket counter at all, rather than a 0 that lies."""
    metrics = Metrics()
    assert not hasattr(metrics, "ticket_outcome")
    assert not {name for (name, _) in samples(metrics)} & {"mmserver_tickets_total", "mmserver_tickets_created"}
    metrics.watch(stats=CountingStats(ConnectionError("Redis is away")), subscriber_status=dict)
    assert not {name for (name, _) in samples(metrics) if name.startswith("mmserver_tickets")}


def test_observe_tick_counts_each_field_of_the_tick_result():
    metrics = Metrics()
    metrics.observe_tick(TickResult(matches_claimed=2, claim_conflicts=1, deadlines_processed=3,
                                    backfilled=2, proposals=3, answers_reused=7), 0.004)
    metrics.observe_tick(TickResult(matches_claimed=1), 0.02)
    metrics.observe_tick(TickResult(), 0.5)

    assert value(metrics, "mmserver_matches_claimed_total") == 3
    assert value(metrics, "mmserver_claim_conflicts_total") == 1
    assert value(metrics, "mmserver_deadlines_processed_total") == 3
    assert value(metrics, "mmserver_backfill_fills_total") == 2
    assert value(metrics, "mmserver_blocked_answers_reused_total") == 7
    assert value(metrics, "mmserver_match_function_errors_total") == 0
    assert value(metrics, "mmserver_tick_duration_seconds_count") == 3
    assert value(metrics, "mmserver_tick_duration_seconds_sum") == pytest.approx(0.524)
    assert value(metrics, "mmserver_tick_duration_seconds_bucket", le="0.005") == 1


def test_every_tick_count_is_a_field_of_the_tick_result():
    fields = {f.name for f in dataclasses.fields(TickResult)}
    assert set(TICK_COUNTS) <= fields


def test_timed_tick_records_results_and_counts_errors():
    metrics = Metrics()
    results = iter([TickResult(matches_claimed=4), RuntimeError("redis away"),
                    TickResult(deadlines_processed=1)])

    def tick() -> TickResult:
        item = next(results)
        if isinstance(item, Exception):
            raise item
        return item

    job = metrics.timed_tick(tick)
    assert job() == TickResult(matches_claimed=4)
    with pytest.raises(RuntimeError, match="redis away"):
        job()
    job()
    assert value(metrics, "mmserver_matches_claimed_total") == 4
    assert value(metrics, "mmserver_deadlines_processed_total") == 1
    assert value(metrics, "mmserver_tick_errors_total") == 1
    assert value(metrics, "mmserver_tick_duration_seconds_count") == 2


# --- pulled state ---

class CountingStats:
    def __init__(self, answer: dict | Exception) -> None:
        self.answer = answer
        self.calls = 0

    def __call__(self) -> dict:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_watch_reports_store_and_subscriber_state():
    metrics = Metrics()
    metrics.watch(stats=lambda: FULL_STATS, subscriber_status=lambda: SUBSCRIBER)
    found = samples(metrics)

    def get(name: str, **labels: str) -> float:
        return found[(name, tuple(sorted(labels.items())))]

    assert get("mmserver_queue_tickets", mode="duel", state="queued") == 3
    assert get("mmserver_queue_tickets", mode="duel", state="matched") == 2
    assert get("mmserver_queue_tickets", mode="squad", state="assigned") == 8
    assert get("mmserver_queue_oldest_wait_seconds", mode="duel") == 12.5
    assert get("mmserver_queue_oldest_wait_seconds", mode="squad") == 0  # empty queue
    assert get("mmserver_sessions", state="allocating") == 2
    assert get("mmserver_servers", state="free") == 6
    assert get("mmserver_servers", state="stale") == 1
    assert get("mmserver_subscriber_connected") == 1
    assert get("mmserver_subscriber_reconnects_total") == 4
    assert get("mmserver_redis_up") == 1
    for outcome in OUTCOMES:
        assert get("mmserver_tickets_total", mode="duel", outcome=outcome) == \
            FULL_STATS["outcomes"]["duel"][outcome]
    # An outcome absent from the stats reads 0, never missing: rate() works from the start.
    assert get("mmserver_tickets_total", mode="squad", outcome="assigned") == 8
    assert get("mmserver_tickets_total", mode="squad", outcome="expired") == 0


def test_ticket_outcomes_are_one_counter_family_with_bounded_labels():
    metrics = Metrics()
    stats = {"outcomes": {"duel": {"created": 2, "teleported": 7, "cancelled": "many"}}}
    metrics.watch(stats=lambda: stats, subscriber_status=dict)
    data, _ = metrics.render()
    families = {f.name: f for f in text_string_to_metric_families(data.decode("utf-8"))}
    family = families["mmserver_tickets"]
    assert family.type == "counter"
    assert "fleet-wide" in family.documentation
    found = {(s.labels["mode"], s.labels["outcome"]): s.value for s in family.samples
             if s.name == "mmserver_tickets_total"}
    assert found == {("duel", outcome): (2 if outcome == "created" else 0) for outcome in OUTCOMES}


def test_watch_tolerates_missing_keys():
    metrics = Metrics()
    metrics.watch(stats=lambda: {"queues": {"duel": {"queued": 1}}},
                  subscriber_status=lambda: {"alive": True})
    assert value(metrics, "mmserver_queue_tickets", mode="duel", state="queued") == 1
    assert value(metrics, "mmserver_queue_tickets", mode="duel", state="assigned") == 0
    assert value(metrics, "mmserver_sessions", state="accepting") == 0
    assert value(metrics, "mmserver_servers", state="busy") == 0
    assert value(metrics, "mmserver_subscriber_connected") == 0
    assert value(metrics, "mmserver_subscriber_reconnects_total") == 0
    assert value(metrics, "mmserver_redis_up") == 1


def test_stats_cached_across_a_burst_of_scrapes():
    metrics = Metrics()
    stats = CountingStats(FULL_STATS)
    now = [100.0]
    metrics.watch(stats=stats, subscriber_status=lambda: SUBSCRIBER, clock=lambda: now[0])
    assert stats.calls == 0  # registering describes the metrics without asking Redis
    for _ in range(5):
        assert value(metrics, "mmserver_queue_tickets", mode="duel", state="queued") == 3
    assert stats.calls == 1

    stats.answer = {"queues": {"duel": {"queued": 9}}}
    now[0] += 1.9
    assert value(metrics, "mmserver_queue_tickets", mode="duel", state="queued") == 3
    now[0] += 0.2  # past the 2 s default
    assert value(metrics, "mmserver_queue_tickets", mode="duel", state="queued") == 9
    assert stats.calls == 2


def test_concurrent_scrapes_share_one_stats_call():
    metrics = Metrics()
    release = threading.Event()
    calls = []

    def slow_stats() -> dict:
        calls.append(1)
        release.wait(5)
        return FULL_STATS

    metrics.watch(stats=slow_stats, subscriber_status=lambda: SUBSCRIBER)
    rendered = []
    scrapers = [threading.Thread(target=lambda: rendered.append(metrics.render()), name=f"scrape-{n}")
                for n in range(4)]
    for scraper in scrapers:
        scraper.start()
    release.set()
    for scraper in scrapers:
        scraper.join(5)
    assert len(rendered) == 4 and len(calls) == 1


def test_failing_stats_reports_redis_down_without_raising():
    metrics = Metrics()
    stats = CountingStats(ConnectionError("Redis is away"))
    metrics.watch(stats=stats, subscriber_status=lambda: dict(SUBSCRIBER, connected=False),
                  stats_max_age_s=0.0)
    found = samples(metrics)
    assert found[("mmserver_redis_up", ())] == 0
    assert found[("mmserver_subscriber_connected", ())] == 0
    assert found[("mmserver_subscriber_reconnects_total", ())] == 4
    state_names = {"mmserver_queue_tickets", "mmserver_queue_oldest_wait_seconds",
                   "mmserver_sessions", "mmserver_servers", "mmserver_tickets_total"}
    assert not state_names & {name for (name, _) in found}

    stats.answer = FULL_STATS  # Redis back: the next scrape (max age 0) sees it
    assert value(metrics, "mmserver_redis_up") == 1
    assert value(metrics, "mmserver_servers", state="busy") == 3
    assert stats.calls == 3  # max age 0: one call per scrape


def test_failure_is_cached_like_a_success():
    metrics = Metrics()
    stats = CountingStats(TimeoutError("no answer"))
    metrics.watch(stats=stats, subscriber_status=lambda: SUBSCRIBER)
    for _ in range(5):
        assert value(metrics, "mmserver_redis_up") == 0
    assert stats.calls == 1


def test_failing_subscriber_status_still_renders_the_rest():
    metrics = Metrics()

    def broken() -> dict:
        raise AttributeError("not started")

    metrics.watch(stats=lambda: FULL_STATS, subscriber_status=broken)
    assert value(metrics, "mmserver_redis_up") == 1
    assert value(metrics, "mmserver_subscriber_connected") is None


def test_watch_only_once():
    metrics = Metrics()
    metrics.watch(stats=dict, subscriber_status=dict)
    with pytest.raises(RuntimeError):
        metrics.watch(stats=dict, subscriber_status=dict)


def test_served_on_the_control_plane_metrics_route():
    metrics = Metrics()
    metrics.watch(stats=lambda: FULL_STATS, subscriber_status=lambda: SUBSCRIBER)
    client = falcon.testing.TestClient(create_admin_app(RecordingControl(), token=TOKEN, metrics=metrics.render))
    result = client.simulate_get("/metrics")  # no token: scrapers carry none
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(result.text)}
    assert {"mmserver_tickets", "mmserver_redis_up", "mmserver_queue_tickets"} <= names
    assert 'mmserver_tickets_total{mode="duel",outcome="assigned"} 24.0' in result.text


def test_ready_gauge_follows_the_readiness_check():
    metrics = Metrics()
    answer = [(False, "starting")]
    metrics.watch_readiness(lambda: answer[0])
    assert samples(metrics)[("mmserver_ready", ())] == 0.0
    answer[0] = (True, "ready")
    assert samples(metrics)[("mmserver_ready", ())] == 1.0
    answer[0] = (False, "draining")
    assert samples(metrics)[("mmserver_ready", ())] == 0.0


def test_view_cache_counters_come_from_the_cache_itself():
    from mmserver.store.viewcache import ViewCache

    cache = ViewCache(10, 30.0)
    cache.connected()
    fill = cache.begin("t1")
    cache.put(fill, ["ok", "id", "t1", "s", "queued", "v", "1", "p", "alice", "m", "duel"], "@b")
    assert cache.get("t1", "@b") is not None  # a hit
    assert cache.get("t2", "@b") is None      # a miss
    cache.on_message("t1")                    # the ticket changed: dropped
    metrics = Metrics()
    metrics.watch_view_cache(cache.status)
    assert value(metrics, "mmserver_view_cache_reads_total", result="hit") == cache.hits >= 1
    assert value(metrics, "mmserver_view_cache_reads_total", result="miss") == cache.misses >= 1
    assert value(metrics, "mmserver_view_cache_invalidations_total") == cache.invalidations >= 1
    assert value(metrics, "mmserver_view_cache_entries") == 0
    assert value(metrics, "mmserver_view_cache_live") == 1
