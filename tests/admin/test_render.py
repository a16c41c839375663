"""Pure parts of mmadmin: status text, URL and token resolution, drain progress."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from mmserver_admin import render
from mmserver_admin.cli import default_url, main, pending_work, resolve_token
from mmserver_admin.client import AdminError
from tests.admin.controls import STATUS, TOKEN, write_token


def test_full_status_text():
    text = render.status_text(STATUS)
    lines = text.splitlines()
    assert lines[0] == "state:     running"
    assert "reason" not in lines[1]  # a null reason is left out
    assert "uptime:    1h 2m 5s" in lines
    assert "replica:   replica-a1" in lines
    assert any(line.split()[:2] == ["http", "ok"] and "in_flight=0" in line for line in lines)
    assert any(line.split()[:2] == ["subscriber", "DOWN"] for line in lines)
    assert any(line.split()[0] == "duel" and "queued=4" in line and "oldest_wait_s=2.5" in line
               for line in lines)
    assert "sessions:  accepting=1 allocating=0 assigned=3" in lines
    assert "servers:   free=2 busy=3 stale=0" in lines
    assert "replicas (2):" in lines


@pytest.mark.parametrize("status", [
    {},
    {"state": "starting"},
    {"workers": None, "queues": None, "sessions": None, "servers": None, "replicas": None},
    {"workers": [], "queues": {}, "replicas": {}},
    {"workers": [{"name": "http", "state": "serving"}, "odd", 3], "queues": {"duel": 7}},
    {"workers": {"http": True, "tick": False, "x": "weird", "y": {"nested": {"a": 1}}}},
    {"sessions": 5, "servers": ["s1", "s2"], "replicas": 3, "uptime_s": "soon"},
    {"servers": {"pool": {"free": 1}}, "replicas": [{"host": "h"}, "r2"]},
])
def test_status_text_tolerates_missing_and_odd_shapes(status):
    text = render.status_text(status)
    assert text.startswith("state:")


def test_unknown_keys_are_still_shown():
    text = render.status_text({"state": "running", "redis": {"connected": True, "latency_ms": 0.3},
                               "version": "0.2.0"})
    assert 'redis:     {"connected":true,"latency_ms":0.3}' in text
    assert "version:   0.2.0" in text


def test_worker_health_labels():
    text = render.status_text({"workers": [{"name": "tick", "healthy": False, "last_tick_age_s": 12.0},
                                           {"name": "sub", "state": "reconnecting"}]})
    assert any(line.split()[:2] == ["tick", "DOWN"] and "last_tick_age_s=12" in line
               for line in text.splitlines())
    assert any(line.split()[:2] == ["sub", "reconnecting"] for line in text.splitlines())


@pytest.mark.parametrize("seconds,expected", [
    (0, "0s"), (59.9, "59s"), (61, "1m 1s"), (3600, "1h 0m 0s"), (90061, "1d 1h 1m 1s"),
    (None, "-"), ("x", "x"), (True, "yes"),
])
def test_duration(seconds, expected):
    assert render.duration(seconds) == expected


def test_action_text():
    assert render.action_text({"state": "stopping", "reason": "deploy", "exit_status": 1}) == \
        "state: stopping (reason=deploy exit_status=1)"
    assert render.action_text({}) == "state: unknown"


@pytest.mark.parametrize("env,expected", [
    ({}, "http://127.0.0.1:8081"),
    ({"MMSERVER_ADMIN_LISTEN": "10.1.2.3:9000"}, "http://10.1.2.3:9000"),
    ({"MMSERVER_ADMIN_LISTEN": "0.0.0.0:9000"}, "http://127.0.0.1:9000"),
    ({"MMSERVER_ADMIN_LISTEN": "[::]:9000"}, "http://[::1]:9000"),
    ({"MMSERVER_ADMIN_LISTEN": "[::1]:9000"}, "http://[::1]:9000"),
    ({"MMSERVER_ADMIN_LISTEN": "localhost:9000"}, "http://localhost:9000"),
    ({"MMADMIN_URL": "https://admin.example:443", "MMSERVER_ADMIN_LISTEN": "x:1"},
     "https://admin.example:443"),
    ({"MMADMIN_URL": "", "MMSERVER_ADMIN_LISTEN": ""}, "http://127.0.0.1:8081"),
])
def test_default_url(env, expected):
    assert default_url(env) == expected


def test_token_sources_in_order(tmp_path):
    flag_file = write_token(tmp_path / "flag.token", "from-flag-file")
    env_file = write_token(tmp_path / "env.token", "from-env-file")
    data = tmp_path / "data"
    data.mkdir()
    write_token(data / "admin.token", "from-data-dir")
    env = {"MMSERVER_ADMIN_TOKEN": "from-env", "MMSERVER_ADMIN_TOKEN_FILE": str(env_file),
           "MMSERVER_DATA_DIR": str(data)}
    assert resolve_token("from-flag", None, env) == "from-flag"
    assert resolve_token(None, flag_file, env) == "from-flag-file"
    assert resolve_token(None, None, env) == "from-env"
    del env["MMSERVER_ADMIN_TOKEN"]
    assert resolve_token(None, None, env) == "from-env-file"
    del env["MMSERVER_ADMIN_TOKEN_FILE"]
    assert resolve_token(None, None, env) == "from-data-dir"


def test_token_errors_are_usage_errors(tmp_path):
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    for call in (lambda: resolve_token(None, empty, {}),
                 lambda: resolve_token("  ", None, {}),
                 lambda: resolve_token(None, None, {"MMSERVER_ADMIN_TOKEN_FILE": str(tmp_path / "no")}),
                 lambda: resolve_token(None, None, {"MMSERVER_DATA_DIR": str(tmp_path / "none")})):
        with pytest.raises(AdminError) as caught:
            call()
        assert caught.value.exit_status == 2


def test_pending_work_is_this_replicas_requests_not_the_shared_queues():
    # STATUS has tickets queued fleet-wide: they are not this replica's to wait for.
    assert pending_work(STATUS) == {"in_flight": 0, "long_polls": None}
    # The shared queues are not this replica's work.
    idle = {"workers": {"http": {"in_flight": 0, "long_polls": 0}}, "queues": {"duel": {"queued": 9}}}
    assert pending_work(idle) == {"in_flight": 0, "long_polls": 0}
    busy = {"workers": {"http": {"in_flight": 4, "long_polls": 2}}}
    assert pending_work(busy) == {"in_flight": 4, "long_polls": 2}


@pytest.mark.parametrize("status", [
    {},
    {"workers": None},
    {"workers": {"http": None}},
    {"workers": {"http": {"in_flight": True, "long_polls": "0"}}},
])
def test_pending_work_unknown_counts_are_none_never_zero(status):
    assert pending_work(status) == {"in_flight": None, "long_polls": None}


@pytest.mark.parametrize("argv", [
    ["--timeout", "0", "status"],
    ["--timeout", "abc", "status"],
    ["--token", "a", "--token-file", "b", "status"],
    ["frobnicate"],
    [],
    ["--url", "ftp://host", "--token", TOKEN, "status"],
])
def test_usage_errors_exit_2(argv, tmp_path: Path):
    err = io.StringIO()
    assert main(argv, env={"MMSERVER_DATA_DIR": str(tmp_path)}, out=io.StringIO(), err=err) == 2


def test_status_text_of_the_services_shape():
    # The shape mmserver/control.py answers today: scheduler jobs become one line each.
    status = {
        "replica": "r-1", "version": "0.1.0", "state": "draining", "reason": None, "uptime_s": 12.3,
        "ready": False, "readiness": "draining",
        "workers": {
            "http": {"alive": True, "in_flight": 1, "long_polls": 0},
            "scheduler": {"alive": True, "running": True, "stalled": [],
                          "jobs": {"matchmaker": {"interval_s": 0.5, "runs": 20, "failures": 0}}},
            "subscriber": {"alive": True, "connected": False, "reconnect_attempts": 2},
        },
        "queues": {"duel": {"queued": 0, "oldest_wait_s": None, "matched": 0, "assigned": 0}},
        "store_error": "ConnectionError: refused",
    }
    lines = render.status_text(status).splitlines()
    assert "replica:   r-1" in lines
    assert "      jobs matchmaker: interval_s=0.5 runs=20 failures=0" in lines
    assert any(line.split()[:2] == ["subscriber", "ok"] and "reconnect_attempts=2" in line
               for line in lines)
    assert "store_error: ConnectionError: refused" in lines
    assert "readiness: draining" in lines


def test_watch_names_what_keeps_each_queue_waiting():
    status = {"queues": {
        "ranked": {"queued": 15, "oldest_wait_s": 40.0, "matched": 0, "assigned": 10,
                   "blocked_by": {"mmr": 3, "level-gap": 12}},
        "duel": {"queued": 0, "oldest_wait_s": None, "matched": 0, "assigned": 0, "blocked_by": {}},
    }}
    lines = render.watch_text(status, "http://127.0.0.1:8081", 0.0).splitlines()
    header = next(line for line in lines if line.strip().startswith("MODE"))
    assert header.split()[-2:] == ["WAITING", "ON"]
    ranked = next(line for line in lines if line.strip().startswith("ranked"))
    assert ranked.rstrip().endswith("level-gap 12, mmr 3")  # most first
    duel = next(line for line in lines if line.strip().startswith("duel"))
    assert duel.rstrip().endswith("-")
    # mmadmin status shows the counts too
    assert 'blocked_by={"level-gap":12,"mmr":3}' in render.status_text(status)


# --- mmadmin match / player ---

def test_record_text_of_a_match():
    from tests.admin.controls import MATCH
    lines = render.record_text("match", MATCH).splitlines()
    assert lines[:3] == ["match m-7Qx2", "  mode:       duel", "  region:     -"]
    assert "  created_at: 1718000000.5 (2024-06-10 06:13:20 UTC)" in lines
    assert lines.count("    players (1):") == 2
    assert "  teams #1:" in lines and "  teams #2:" in lines
    header = next(line for line in lines if "player_id" in line)
    assert header.split() == ["player_id", "ticket_id", "mmr"]


def test_record_text_keeps_every_field_it_does_not_know():
    record = {"player_id": "p1", "new_field": {"deep": [1, 2]}, "flags": [],
              "rows": [{"a": 1}, {"b": {"nested": True}}], "expires_at": "later"}
    text = render.record_text("player", record)
    lines = text.splitlines()
    assert lines[0] == "player p1"
    assert "    deep: 1, 2" in lines
    assert "  flags:      (none)" in lines
    assert "  rows #2:" in lines and "      nested: yes" in lines
    assert "  expires_at: later" in lines  # not a number: shown as it is


@pytest.mark.parametrize("record", [
    {}, {"match_id": None}, {"teams": []}, {"teams": [{}]}, {"teams": [{"players": []}]},
    {"x": [[1, 2], [3]]}, {"x": [{"a": [{"b": 1}]}]}, {"created_at": True}, {1: 2},
])
def test_record_text_never_fails_on_odd_shapes(record):
    assert isinstance(render.record_text("match", record), str)
