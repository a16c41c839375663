"""The alerting rules and the dashboard against Debian's promtool and a live replica's /metrics.

- `promtool check rules` on the rules, and `promtool test rules` on their unit tests (all seven alerts,
  each firing on its series and quiet on a healthy one);
- every dashboard query parses as PromQL (promtool checks them as recording rules);
- every metric name the dashboard and the rules use is one a real replica exposes on /metrics,
  after the activity that makes the lazy ones appear: tickets created (HTTP series), ticks run,
  webhooks configured with a receiver that refuses (delivery gauges and outcome counters).
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.live.conftest import need
from tests.ops.files import REPO
from tests.ops.test_monitoring import DASHBOARD, RULES, dashboard_exprs
from tests.process.harness import MMServer
from tests.redis_server import free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.live

RULE_TESTS = REPO / "monitoring" / "prometheus" / "mmserver.rules.test.yaml"
# A metric name inside PromQL: every one of ours (and the standard process collector's) has one
# of these prefixes, which no PromQL function or keyword has.
METRIC_NAME = re.compile(r"\b((?:mmserver|process)_[a-zA-Z0-9_]+)\b")


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    tool = need("promtool")["promtool"]
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def rule_exprs() -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules():
    result = promtool("check", "rules", str(RULES))
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(group["rules"]) for group in yaml.safe_load(RULES.read_text())["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_promtool_unit_tests_the_alerts():
    tested = {check["alertname"] for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for check in case["alert_rule_test"] if check.get("exp_alerts")}
    assert len(tested) >= 3, tested
    result = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_refuses_a_broken_rule(tmp_path):
    # Guards the checks above: promtool really parses the expressions we hand it.
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"alert": "Broken", "expr": "sum(rate(mmserver_ready[5m]) by"}]}]}))
    assert promtool("check", "rules", str(broken)).returncode != 0


def test_every_dashboard_query_parses(tmp_path):
    exprs = dashboard_exprs(json.loads(DASHBOARD.read_text()))
    as_rules = tmp_path / "dashboard.rules.yaml"
    as_rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{index}", "expr": expr} for index, expr in enumerate(exprs)]}]}))
    result = promtool("check", "rules", str(as_rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


WEBHOOK_CONFIG = """
[modes.duel]
team_size = 1
teams = 2
accept_timeout_s = 0

[auth]
open = true

[webhooks]
url = "http://127.0.0.1:{port}/hook"   # nothing listens: every attempt fails, then dead-letters
secret_file = "{secret}"
max_attempts = 1
timeout_s = 1
backoff_initial_s = 1
backoff_max_s = 1
"""


@pytest.fixture
def replica(tmp_path):
    secret = tmp_path / "webhook.secret"
    secret.write_text("monitoring-test-webhook-secret-0123456789\n")
    secret.chmod(0o600)
    config = tmp_path / "mmserver.toml"
    config.write_text(WEBHOOK_CONFIG.format(port=free_port(), secret=secret))
    server = MMServer(tmp_path / "replica", env={"MMSERVER_CONFIG": str(config),
                                                 "MMSERVER_TICK_INTERVAL_MS": "100"})
    try:
        yield server.start().wait_ready()
    finally:
        server.kill()


def exposed_names(text: str) -> set[str]:
    """Sample names of a text exposition (histograms' _bucket/_sum/_count as they appear)."""
    return {re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            for line in text.splitlines() if line and not line.startswith("#")}


def test_every_metric_the_dashboard_and_rules_use_is_exposed(replica):
    used = set()
    for expr in dashboard_exprs(json.loads(DASHBOARD.read_text())) + rule_exprs():
        used |= set(METRIC_NAME.findall(expr))
    assert "mmserver_ready" in used and "mmserver_webhook_dead_letters" in used

    # Activity that makes the lazily created series appear: requests of several statuses on
    # the public API, a match (tick counters), a ticket left waiting, a webhook delivery that fails and dead-letters.
    assert replica.post("/v1/tickets", {"player_id": "one", "mode": "duel", "mmr": 1000}).status == 201
    assert replica.post("/v1/tickets", {"player_id": "two", "mode": "duel", "mmr": 1000}).status == 201
    assert replica.post("/v1/tickets", {"player_id": "bad", "mode": "nope"}).status in (400, 422)
    # Left alone in its queue: the tick reports it blocked (mmserver_queue_blocked_tickets has
    # series only while some ticket is).
    assert replica.post("/v1/tickets", {"player_id": "alone", "mode": "duel", "mmr": 5000}).status == 201
    assert wait_until(lambda: replica.admin("/admin/webhooks/dead").json()["total"] > 0, 30)

    def missing() -> set[str]:
        answer = replica.admin("/metrics", token="")
        assert answer.status == 200
        return used - exposed_names(answer.body.decode())

    # Scrape-time figures are cached for a couple of seconds: wait for a scrape that has them.
    wait_until(lambda: not missing(), 15, interval=0.5)
    assert missing() == set()
    print(f"{len(used)} metric names used by the dashboard and the rules, all exposed:", sorted(used))
