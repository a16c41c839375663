"""mmadmin as a real subprocess against the admin app served on a real socket."""
from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mmserver.config import Address
from mmserver.http.server import HttpServer
from mmserver_admin.app import create_admin_app
from mmserver.store import RedisUnavailable
from tests.admin.controls import MATCH, PLAYER, TOKEN, RecordingControl, write_token

CONSOLE_SCRIPT = Path(sys.executable).with_name("mmadmin")
MMADMIN = [str(CONSOLE_SCRIPT)] if CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "mmserver_admin.cli"]


class AdminServer:
    """The admin app on the HTTP server the service itself runs (waitress), on a real socket."""

    def __init__(self, control: RecordingControl, token: str = TOKEN, port: int = 0) -> None:
        self.control = control
        self._http = HttpServer([(Address("127.0.0.1", port), create_admin_app(control, token=token))],
                                threads=4, max_request_body_size=16384)
        self._http.bind()
        bound = self._http.addresses[0]
        self.url = f"http://127.0.0.1:{bound.port}"
        self.listen = f"127.0.0.1:{bound.port}"

    def start(self) -> "AdminServer":
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop_accepting()
        self._http.drain(time.monotonic() + 5)

    def __enter__(self) -> "AdminServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture
def server():
    with AdminServer(RecordingControl()) as running:
        yield running


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    # A clean environment: nothing from the developer's shell (proxies, tokens) leaks in.
    base = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(MMADMIN + args, cwd=cwd, env={**base, **env}, capture_output=True,
                          text=True, timeout=30)


def test_status_human_readable(server, tmp_path):
    result = run(["status"], tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "state:     running" in out
    assert "uptime:    1h 2m 5s" in out
    assert "subscriber" in out and "DOWN" in out and "reconnect_attempts=3" in out
    assert "duel" in out and "queued=4" in out
    assert "replicas (2):" in out and "replica-b2" in out
    assert "free=2" in out and "accepting=1" in out
    assert result.stderr == ""
    assert server.control.calls == [("status",)]


def test_status_json_is_the_raw_answer(server, tmp_path):
    result = run(["--json", "status"], tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == server.control.status()


def test_shutdown_with_reason(server, tmp_path):
    result = run(["shutdown", "--reason", "rolling out v2"], tmp_path,
                 MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    assert "stopping" in result.stdout and "rolling out v2" in result.stdout
    assert server.control.calls == [("request_shutdown", "rolling out v2")]


def test_shutdown_with_a_reason_the_server_refuses_exits_2(server, tmp_path):
    result = run(["shutdown", "--reason", "x" * 201], tmp_path,
                 MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 2
    assert "longer than 200 characters" in result.stderr
    assert server.control.calls == []


def test_shutdown_without_reason_is_a_usage_error(server, tmp_path):
    result = run(["shutdown"], tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 2
    assert "--reason" in result.stderr
    assert server.control.calls == []


def test_drain(server, tmp_path):
    result = run(["--json", "drain"], tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "draining"
    assert server.control.calls == [("drain",)]


def test_drain_wait_returns_once_nothing_is_pending(tmp_path):
    # The fleet's queues are not empty: drain --wait does not wait for them, only for this
    # replica's own requests (the one in flight is the status request asking).
    idle = RecordingControl(status={"state": "draining",
                                    "workers": {"http": {"in_flight": 0, "long_polls": 0}},
                                    "queues": {"duel": {"queued": 7, "matched": 2}}})
    with AdminServer(idle) as server:
        result = run(["drain", "--wait", "--interval", "0.1"], tmp_path,
                     MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    assert "drained: in_flight=0 long_polls=0" in result.stdout
    assert idle.calls == [("drain",), ("status",)]


def test_drain_wait_as_json_keeps_stdout_one_json_document(tmp_path):
    idle = RecordingControl(status={"state": "draining",
                                    "workers": {"http": {"in_flight": 0, "long_polls": 0}}})
    with AdminServer(idle) as server:
        result = run(["--json", "drain", "--wait", "--interval", "0.1"], tmp_path,
                     MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "draining"
    assert "drained: in_flight=0 long_polls=0" in result.stderr


def test_drain_wait_prints_progress_then_times_out_with_status_1(tmp_path):
    busy = RecordingControl(status={"state": "draining",
                                    "workers": {"http": {"in_flight": 2, "long_polls": 1}}})
    with AdminServer(busy) as server:
        result = run(["drain", "--wait", "--wait-timeout", "0.5", "--interval", "0.1"], tmp_path,
                     MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 1
    progress = [line for line in result.stdout.splitlines() if line.startswith("waiting (")]
    assert len(progress) >= 2 and all(line.endswith("): in_flight=2 long_polls=1") for line in progress)
    assert "still busy after 0.5 s: in_flight=2 long_polls=1" in result.stderr
    assert busy.calls.count(("status",)) >= 2


def test_drain_wait_never_takes_a_missing_count_for_zero(server, tmp_path):
    # STATUS has no long_polls: unknown, shown as "?", so the wait does not end as drained.
    result = run(["drain", "--wait", "--wait-timeout", "0.3", "--interval", "0.1"], tmp_path,
                 MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 1
    assert "in_flight=0 long_polls=?" in result.stdout
    assert "drained" not in result.stdout


def test_wrong_token_exits_2_without_echoing_it(server, tmp_path):
    wrong = TOKEN[:-1] + "Z"
    result = run(["status"], tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=wrong)
    assert result.returncode == 2
    assert result.stderr == "mmadmin: the admin token was refused\n"
    assert wrong not in result.stdout + result.stderr
    assert server.control.calls == []


def test_unreachable_exits_1_with_one_line(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run(["status"], tmp_path, MMADMIN_URL=f"http://127.0.0.1:{port}", MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmadmin: cannot reach") and str(port) in lines[0]
    assert "Traceback" not in result.stderr


def test_url_from_admin_listen_and_token_from_token_file(server, tmp_path):
    token_file = write_token(tmp_path / "secret.token")
    result = run(["--json", "status"], tmp_path, MMSERVER_ADMIN_LISTEN=server.listen,
                 MMSERVER_ADMIN_TOKEN_FILE=str(token_file))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "running"


def test_token_from_the_generated_file_in_the_data_dir(server, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_token(data_dir / "admin.token")
    result = run(["--json", "status"], tmp_path, MMSERVER_ADMIN_LISTEN=server.listen,
                 MMSERVER_DATA_DIR=str(data_dir))
    assert result.returncode == 0, result.stderr


def test_token_from_the_default_data_dir(server, tmp_path):
    (tmp_path / "var").mkdir()
    write_token(tmp_path / "var" / "admin.token")
    result = run(["--json", "status"], tmp_path, MMSERVER_ADMIN_LISTEN=server.listen)
    assert result.returncode == 0, result.stderr


def test_flags_win_over_the_environment(server, tmp_path):
    token_file = write_token(tmp_path / "good.token")
    result = run(["--url", server.url, "--token-file", str(token_file), "--json", "status"], tmp_path,
                 MMADMIN_URL="http://127.0.0.1:9", MMSERVER_ADMIN_TOKEN="wrong")
    assert result.returncode == 0, result.stderr


def test_no_token_anywhere_exits_2(server, tmp_path):
    result = run(["status"], tmp_path, MMADMIN_URL=server.url)
    assert result.returncode == 2
    assert result.stderr.startswith("mmadmin: no admin token")
    assert server.control.calls == []


def test_unreadable_token_file_exits_2(server, tmp_path):
    result = run(["--token-file", str(tmp_path / "missing"), "status"], tmp_path, MMADMIN_URL=server.url)
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "missing" in result.stderr


def test_pointed_at_the_wrong_service_exits_2(server, tmp_path):
    # The URL of something that is not the admin listener (here: an unknown prefix) answers 404.
    result = run(["status"], tmp_path, MMADMIN_URL=server.url + "/v1", MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 2
    assert "404 Not Found" in result.stderr


def test_server_error_exits_1(tmp_path):
    failing = RecordingControl(fail_status=RuntimeError("boom"))
    with AdminServer(failing) as server:
        result = run(["status"], tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 1
    assert "answered 500 Internal error: " in result.stderr
    assert len(result.stderr.splitlines()) == 1


# --- --json on either side of the command ---

@pytest.mark.parametrize("args", [["--json", "status"], ["status", "--json"]])
def test_json_before_or_after_the_command(server, tmp_path, args):
    result = run(args, tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == server.control.status()


@pytest.mark.parametrize("args", [["drain"], ["undrain"], ["match", "m-7Qx2"], ["player", "alice"]])
def test_json_after_each_command(server, tmp_path, args):
    result = run([*args, "--json"], tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), dict)


def test_without_json_the_answer_is_text(server, tmp_path):
    result = run(["undrain"], tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    with pytest.raises(ValueError):
        json.loads(result.stdout)


# --- undrain ---

def test_undrain(server, tmp_path):
    result = run(["undrain"], tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("state: running (")
    assert "accepting_tickets=yes" in result.stdout and "readiness=ready" in result.stdout
    assert result.stderr == ""
    assert server.control.calls == [("undrain",)]


def test_undrain_of_a_stopping_replica_exits_1_and_says_why(tmp_path):
    with AdminServer(RecordingControl(stopping=True)) as server:
        result = run(["undrain"], tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 1
    assert result.stdout.startswith("state: stopping (")
    assert result.stderr == "mmadmin: not undrained: the replica is stopping\n"


# --- matches and players ---

def test_match_as_text(server, tmp_path):
    result = run(["match", "m-7Qx2"], tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "match m-7Qx2"
    assert "  state:      assigned" in lines
    assert "  server:     10.0.0.5:7777" in lines
    assert "  created_at: 1718000000.5 (2024-06-10 06:13:20 UTC)" in lines
    assert [line.split() for line in lines if "t-alice" in line or "t-bob" in line] == [
        ["alice", "t-alice", "1010"], ["bob", "t-bob", "990"]]
    assert server.control.calls == [("match", "m-7Qx2")]


def test_match_as_json_is_the_raw_answer(server, tmp_path):
    result = run(["--json", "match", "m-7Qx2"], tmp_path, MMADMIN_URL=server.url,
                 MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == MATCH


def test_finish_match(server, tmp_path):
    result = run(["finish-match", "m-7Qx2"], tmp_path, MMADMIN_URL=server.url,
                 MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "match m-7Qx2"
    assert "  status:  finished" in lines and "  players: alice, bob" in lines
    assert server.control.calls == [("finish_match", "m-7Qx2")]


def test_player_as_text(server, tmp_path):
    result = run(["player", "alice"], tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "player alice"
    assert "    status:      assigned" in lines
    assert "      players:  alice, bob" in lines
    assert server.control.calls == [("player", "alice")]


def test_player_as_json_after_the_id(server, tmp_path):
    result = run(["player", "alice", "--json"], tmp_path, MMADMIN_URL=server.url,
                 MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == PLAYER


def test_release(server, tmp_path):
    result = run(["release", "alice"], tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "player alice"
    assert "  released: yes" in lines and "    reason:      released" in lines
    assert server.control.calls == [("release_player", "alice")]


@pytest.mark.parametrize("args,kind,ident,call", [
    (["match", "m-gone"], "match", "m-gone", "match"),
    (["finish-match", "m-gone"], "match", "m-gone", "finish_match"),
    (["player", "carol"], "player", "carol", "player"),
    (["release", "carol"], "player", "carol", "release_player"),
])
def test_nothing_by_that_id_is_one_clear_line_and_exit_2(server, tmp_path, args, kind, ident, call):
    result = run(args, tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"mmadmin: no {kind} '{ident}' on this service (404: ")
    assert ident in lines[0].split("(404: ", 1)[1]  # the service's own sentence follows
    assert server.control.calls == [(call, ident)]


def test_an_id_is_one_path_segment(server, tmp_path):
    # '/' and '?' are quoted: the id cannot reach another resource or add a query.
    result = run(["release", "alice/../../drain"], tmp_path, MMADMIN_URL=server.url,
                 MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 2
    assert server.control.calls == []
    result = run(["match", "m-7Qx2?x=1"], tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 2 and "no match 'm-7Qx2?x=1'" in result.stderr
    assert server.control.calls == []


def test_a_malformed_player_id_is_refused_by_the_service_with_exit_2(server, tmp_path):
    result = run(["player", "bad id!"], tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 2
    assert "answered 400 Invalid request: 'player_id' must be" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert server.control.calls == []


def test_redis_unavailable_exits_1(tmp_path):
    down = RecordingControl(fail=RedisUnavailable("Redis is unavailable: Connection refused"))
    with AdminServer(down) as server:
        result = run(["release", "alice"], tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 1
    assert "answered 503 Service unavailable" in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("args", [["match"], ["finish-match"], ["player"], ["release"]])
def test_a_lookup_without_an_id_is_a_usage_error(server, tmp_path, args):
    result = run(args, tmp_path, MMADMIN_URL=server.url, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 2
    assert "required" in result.stderr
    assert server.control.calls == []


class _OddAnswers(http.server.BaseHTTPRequestHandler):
    """Not the admin listener: answers what a wrong URL or a hostile endpoint might."""

    def do_GET(self) -> None:
        status, body = {
            "/deep/admin/matches/m1": (200, b"[" * 200_000),
            "/deep-error/admin/matches/m1": (404, b"[" * 200_000),
            "/nan/admin/status": (200, b'{"state": "running", "uptime_s": NaN}'),
        }[self.path]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("prefix, args", [("/deep", ["match", "m1"]), ("/deep-error", ["match", "m1"]),
                                          ("/nan", ["status"])])
def test_an_odd_answer_is_one_line_not_a_traceback(tmp_path, prefix, args):
    odd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OddAnswers)
    threading.Thread(target=odd.serve_forever, daemon=True).start()
    try:
        result = run(args, tmp_path, MMADMIN_URL=f"http://127.0.0.1:{odd.server_port}{prefix}",
                     MMSERVER_ADMIN_TOKEN=TOKEN)
    finally:
        odd.shutdown()
        odd.server_close()
    assert result.returncode in (1, 2), result
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("mmadmin: ")
