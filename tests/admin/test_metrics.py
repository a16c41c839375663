"""/metrics served from the replica's real prometheus_client registry."""
from __future__ import annotations

import falcon.testing
from prometheus_client import Gauge

from mmserver_admin.app import create_admin_app
from mmserver.metrics import Metrics
from tests.admin.controls import TOKEN, RecordingControl


def test_metrics_from_a_registry_without_token():
    metrics = Metrics()
    queued = Gauge("mm_tickets_queued", "Tickets waiting in a queue", ["mode"], registry=metrics.registry)
    queued.labels(mode="duel").set(4)
    client = falcon.testing.TestClient(
        create_admin_app(RecordingControl(), token=TOKEN, metrics=metrics.render))
    result = client.simulate_get("/metrics")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/plain")
    assert 'mm_tickets_queued{mode="duel"} 4.0' in result.text
    queued.labels(mode="duel").set(7)  # every scrape reads the registry afresh
    assert 'mm_tickets_queued{mode="duel"} 7.0' in client.simulate_get("/metrics").text
