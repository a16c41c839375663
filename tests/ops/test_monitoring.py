"""Offline checks of the monitoring files: the Grafana dashboard is provisioning-ready, the
Kubernetes PrometheusRule carries exactly the alerting rules promtool tests, and the PodMonitor
scrapes the port /metrics is on. promtool itself and the live /metrics: tests/live/test_monitoring.py."""
from __future__ import annotations

import json

import pytest
import yaml

from mmserver.config import env_name
from tests.ops.files import REPO

DASHBOARD = REPO / "monitoring" / "grafana" / "mmserver.json"
RULES = REPO / "monitoring" / "prometheus" / "mmserver.rules.yaml"
OPERATOR = REPO / "k8s" / "monitoring" / "mmserver-monitoring.yaml"
REQUIRED_ALERTS = {"MmserverNoReadyReplica", "MmserverTicksStalled", "MmserverQueueWaitGrowing",
                   "MmserverRedisUnreachable", "MmserverSubscriberReconnecting",
                   "MmserverWebhookDeadLetters", "MmserverHigh5xxRate"}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def operator_documents() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(OPERATOR.read_text(encoding="utf-8")) if d}


def dashboard_exprs(dashboard: dict) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_dashboard_is_provisioning_ready(dashboard):
    # Provisioned dashboards are matched by uid; a fixed numeric id would clash with the database.
    assert dashboard["uid"] and "id" not in dashboard
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    reference = {"type": "prometheus", "uid": "${%s}" % variable["name"]}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        # Every query goes through the variable: no data-source uid of one Grafana is baked in.
        assert panel["datasource"] == reference, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == reference and target["expr"].strip(), panel["title"]


def test_dashboard_panels_do_not_overlap(dashboard):
    taken = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & taken, panel["title"]
        taken |= cells


def test_rules_name_every_required_alert_with_severity_and_summary():
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_prometheus_rule_carries_the_tested_rules_verbatim(operator_documents):
    rule = operator_documents["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_pod_monitor_scrapes_the_admin_port_of_the_mmserver_pods(operator_documents):
    monitor = operator_documents["PodMonitor"]
    deployment = next(d for d in yaml.safe_load_all((REPO / "k8s" / "30-mmserver.yaml").read_text())
                      if d and d["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    assert monitor["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    (container,) = [c for c in template["spec"]["containers"] if c["name"] == "mmserver"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert ports[endpoint["port"]] == int(env[env_name("admin_listen")].rpartition(":")[2])
