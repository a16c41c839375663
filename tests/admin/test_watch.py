"""mmadmin watch: the live fleet view, as a real subprocess against the admin app on a real socket."""
from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time

import pytest

from mmserver_admin import render
from tests.admin.controls import STATUS, TOKEN, RecordingControl
from tests.admin.test_cli import MMADMIN, AdminServer, run
from tests.redis_server import free_port

ENV = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1", "MMSERVER_ADMIN_TOKEN": TOKEN}
HEADER = "mmadmin watch "


def fleet_status(now: float) -> dict:
    status = json.loads(json.dumps(STATUS))
    status["replica"] = status.pop("replica_id")
    status["workers"]["http"]["long_polls"] = 5
    status["replicas"] = [
        {"id": "replica-a1", "host": "node-1", "pid": 101, "version": "0.2.0",
         "started_at": now - 3725, "last_tick": now - 0.4, "state": "running"},
        {"id": "replica-b2", "host": "node-2", "pid": 202, "version": "0.2.0",
         "started_at": now - 90, "last_tick": now - 42, "state": "draining"},
    ]
    return status


def frames(stdout: str) -> list[str]:
    return [block for block in stdout.split("\n\n") if block.strip()]


def test_frame_of_the_fleet():
    now = 1_800_000_000.0
    lines = render.watch_text(fleet_status(now), "http://127.0.0.1:8081", now).splitlines()
    assert lines[0].startswith("mmadmin watch http://127.0.0.1:8081 ")
    assert "replica replica-a1: running, up 1h 2m 5s" in lines
    assert "replicas (2):" in lines
    own = next(line for line in lines if "replica-a1" in line and "node-1" in line)
    assert own.split() == ["*", "replica-a1", "node-1", "running", "0.4s", "1h", "2m", "5s", "0.2.0", "101"]
    other = next(line for line in lines if "replica-b2" in line)
    assert other.split() == ["replica-b2", "node-2", "draining", "42s", "1m", "30s", "0.2.0", "202"]
    assert next(line for line in lines if line.split()[:1] == ["duel"]).split() == ["duel", "4", "2.5s", "2", "6", "-"]
    assert "sessions:  accepting=1 allocating=0 assigned=3" in lines
    assert "servers:   free=2 busy=3 stale=0" in lines
    assert any(line.split()[:2] == ["http", "ok"] and "long_polls=5" in line for line in lines)
    assert any(line.split()[:2] == ["subscriber", "DOWN"] for line in lines)


@pytest.mark.parametrize("status", [
    {},
    {"replicas": 3, "queues": [1], "workers": [], "sessions": 2, "servers": None},
    {"replicas": [1, {"id": None, "last_tick": "x", "started_at": True}], "queues": {"a": 1}},
    {"workers": {"http": True, "scheduler": None}, "store_error": "ConnectionError: refused"},
])
def test_frame_tolerates_missing_and_odd_shapes(status):
    text = render.watch_text(status, "http://h:1", 0.0)
    assert text.startswith(HEADER)


def test_a_replica_clock_ahead_of_ours_is_not_a_negative_age():
    now = 1_800_000_000.0
    status = {"replicas": [{"id": "r", "last_tick": now + 3, "started_at": now - 5}]}
    row = next(line for line in render.watch_text(status, "u", now).splitlines() if " r " in f" {line} ")
    assert row.split()[1:] == ["-", "-", "0.0s", "5.0s", "-", "-"]


def test_watch_count_2_prints_two_plain_blocks(tmp_path):
    control = RecordingControl(status=fleet_status(time.time()))
    with AdminServer(control) as server:
        result = run(["--url", server.url, "watch", "--count", "2", "--interval", "0.1"], tmp_path,
                     MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout  # not a terminal: no escape codes in a pipe or a log
    blocks = frames(result.stdout)
    assert len(blocks) == 2 and all(block.startswith(HEADER + server.url) for block in blocks)
    for block in blocks:
        assert "replica-a1" in block and "replica-b2" in block and "draining" in block
        assert "MODE" in block and "duel" in block
        assert "servers:   free=2 busy=3 stale=0" in block
    assert control.calls == [("status",), ("status",)]
    assert result.stderr == ""


def test_watch_json_prints_one_status_per_line(tmp_path):
    control = RecordingControl(status=fleet_status(time.time()))
    with AdminServer(control) as server:
        result = run(["--url", server.url, "--json", "watch", "--count", "2", "--interval", "0.1"],
                     tmp_path, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(json.loads(line) == control.status() for line in lines)


def test_unreachable_shows_the_error_each_refresh_and_exits_1(tmp_path):
    port = free_port()
    result = run(["--url", f"http://127.0.0.1:{port}", "watch", "--count", "2", "--interval", "0.1"],
                 tmp_path, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("error: cannot reach")]
    assert len(errors) == 2 and all(str(port) in line for line in errors)
    assert len(frames(result.stdout)) == 2
    assert "\x1b" not in result.stdout and "Traceback" not in result.stdout + result.stderr


def as_from_a_terminal() -> None:
    """A command started in the background by a non-interactive shell (as CI runs the suite)
    inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler; an
    operator's Ctrl-C reaches a process whose SIGINT is at its default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_keeps_retrying_until_the_service_answers(tmp_path):
    port = free_port()
    watcher = subprocess.Popen(MMADMIN + ["--url", f"http://127.0.0.1:{port}", "watch", "--interval", "0.1"],
                               cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=as_from_a_terminal)
    httpd = None
    try:
        assert watcher.stdout.readline().startswith(HEADER)
        assert watcher.stdout.readline().startswith("error: cannot reach")
        # The service comes up on that port while the view keeps retrying.
        control = RecordingControl(status=fleet_status(time.time()))
        httpd = AdminServer(control, port=port).start()
        deadline = time.monotonic() + 20
        # Every refresh prints lines, so readline() never blocks for long.
        while time.monotonic() < deadline and "replica-b2" not in watcher.stdout.readline():
            pass
        assert time.monotonic() < deadline, "the view never showed the fleet"
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=10)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(5)
        if httpd is not None:
            httpd.stop()
    assert watcher.returncode == 0, err
    assert control.calls


def test_refused_token_ends_the_watch_with_status_2(tmp_path):
    with AdminServer(RecordingControl()) as server:
        result = run(["--url", server.url, "watch", "--interval", "0.1"], tmp_path,
                     MMSERVER_ADMIN_TOKEN=TOKEN + "x")
    assert result.returncode == 2  # retrying cannot fix a wrong token: no endless loop
    assert result.stderr == "mmadmin: the admin token was refused\n"


@pytest.mark.parametrize("args", [["--count", "0"], ["--count", "x"], ["--interval", "0"]])
def test_bad_watch_arguments_exit_2(args, tmp_path):
    result = run(["--url", "http://127.0.0.1:9", "watch", *args], tmp_path, MMSERVER_ADMIN_TOKEN=TOKEN)
    assert result.returncode == 2
    assert "watch" in result.stderr


def test_ctrl_c_exits_0(tmp_path):
    with AdminServer(RecordingControl(status=fleet_status(time.time()))) as server:
        watcher = subprocess.Popen(MMADMIN + ["--url", server.url, "watch", "--interval", "0.1"],
                                   cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, preexec_fn=as_from_a_terminal)
        try:
            assert watcher.stdout.readline().startswith(HEADER)  # running, between refreshes
            watcher.send_signal(signal.SIGINT)
            out, err = watcher.communicate(timeout=10)
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait(5)
    assert watcher.returncode == 0
    assert "Traceback" not in err and "interrupted" not in err


def test_a_terminal_gets_the_screen_cleared_before_each_refresh(tmp_path):
    with AdminServer(RecordingControl(status=fleet_status(time.time()))) as server:
        main_fd, child_fd = pty.openpty()
        try:
            watcher = subprocess.Popen(MMADMIN + ["--url", server.url, "watch", "--count", "2",
                                                  "--interval", "0.1"],
                                       cwd=tmp_path, env=ENV, stdout=child_fd, stderr=subprocess.PIPE)
            os.close(child_fd)
            output = b""
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                ready, _, _ = select.select([main_fd], [], [], 0.5)
                if not ready:
                    if watcher.poll() is not None:
                        break
                    continue
                try:
                    chunk = os.read(main_fd, 65536)
                except OSError:  # the terminal's other end closed: the watcher exited
                    break
                if not chunk:
                    break
                output += chunk
            assert watcher.wait(10) == 0
        finally:
            os.close(main_fd)
    text = output.decode()
    assert text.count(render.CLEAR_SCREEN) == 2
    assert text.count(HEADER) == 2 and "replica-b2" in text


def test_a_reader_that_goes_away_ends_the_watch_quietly(tmp_path):
    with AdminServer(RecordingControl(status=fleet_status(time.time()))) as server:
        watcher = subprocess.Popen(MMADMIN + ["--url", server.url, "watch", "--interval", "0.05"],
                                   cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            assert watcher.stdout.readline().startswith(HEADER)
            watcher.stdout.close()  # like `mmadmin watch | head -1`
            err = watcher.stderr.read()
            assert watcher.wait(10) == 0
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait(5)
    assert "Traceback" not in err and "BrokenPipe" not in err
