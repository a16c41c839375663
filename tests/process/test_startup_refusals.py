"""Starts refused (exit 2, one line) and starts that fail (exit 1, reported to Sentry), against the
real `mmserver` command: the Redis URL, the log level, and the embedded Redis's deployment."""
from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from pathlib import Path

import pytest

from tests.process.harness import MMServer, redis_servers_for
from tests.sentry_sink import SentrySink

LEVEL_AND_LOGGER = " ERROR mmserver.lifecycle: "


def refusal(server: MMServer) -> str:
    """The one line a refused start printed (exit 2)."""
    lines = [line for line in server.lines if line.strip()]
    assert len(lines) == 1, server.output()
    return lines[0]


@pytest.fixture
def short_data_dir():
    """Under /tmp with a short name: the embedded Redis's unix socket path stays under 107 bytes,
    so that the socket (not the loopback fallback) is what it uses."""
    with tempfile.TemporaryDirectory(prefix="mm-", dir="/tmp") as directory:
        yield Path(directory) / "data"


def without_admin_token(server: MMServer) -> MMServer:
    del server.env["MMSERVER_ADMIN_TOKEN"]  # the replica generates (or reuses) its own
    return server


# --- the Redis URL: checked before anything is written --------------------------------------

@pytest.mark.parametrize("token_file_before", [False, True], ids=["first-start", "token-file-left"])
def test_a_url_the_client_refuses_is_one_line_and_writes_no_token(tmp_path, redis_server, token_file_before):
    data_dir = tmp_path / "data"
    if token_file_before:  # a later start: the file of an earlier one is there to be reused
        data_dir.mkdir(mode=0o700)
        (data_dir / "admin.token").write_text("an-earlier-token\n")
        os.chmod(data_dir / "admin.token", 0o600)
    server = without_admin_token(MMServer(tmp_path, redis_url=redis_server.url + "?foo=bar"))
    assert server.start().wait(30) == 2
    line = refusal(server)
    assert LEVEL_AND_LOGGER + "MMSERVER_REDIS_URL: bad option in the Redis URL" in line, line
    assert "unexpected keyword argument 'foo'" in line, line
    if token_file_before:
        assert (data_dir / "admin.token").read_text() == "an-earlier-token\n"
    else:
        assert not (data_dir / "admin.token").exists()


# --- the log level: a refusal's line is printed whatever it filters -------------------------

@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_refusal_is_printed_even_at_log_level_critical(tmp_path, redis_server, log_format):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = MMServer(tmp_path, redis_url=redis_server.url,
                          env={"MMSERVER_LISTEN": f"127.0.0.1:{port}", "MMSERVER_LOG_LEVEL": "CRITICAL",
                               "MMSERVER_LOG_FORMAT": log_format})
        assert server.start().wait(30) == 2
    line = refusal(server)
    says = f"cannot listen on 127.0.0.1:{port} (MMSERVER_LISTEN, public API): Address already in use"
    if log_format == "json":
        record = json.loads(line)
        assert (record["level"], record["logger"], record["message"]) == ("ERROR", "mmserver.lifecycle", says)
    else:
        assert line.endswith(LEVEL_AND_LOGGER + says), line


def test_a_url_refusal_is_printed_even_at_log_level_critical(tmp_path, redis_server):
    server = MMServer(tmp_path, redis_url=redis_server.url + "?socket_timeout=nan",
                      env={"MMSERVER_LOG_LEVEL": "critical"})
    assert server.start().wait(30) == 2
    line = refusal(server)
    assert LEVEL_AND_LOGGER + "MMSERVER_REDIS_URL: socket_timeout in the Redis URL" in line, line


# --- the embedded Redis: what an operator must fix is refused, the rest is exit 1 -------------

def embedded(tmp_path: Path, data_dir: Path, env: dict | None = None) -> MMServer:
    return MMServer(tmp_path, env={"MMSERVER_DATA_DIR": str(data_dir), **(env or {})})


def fake_setpriv(tmp_path: Path, script: str) -> dict:
    """A PATH whose `setpriv` runs `script` (sh) instead of util-linux's."""
    directory = tmp_path / "bin"
    directory.mkdir()
    path = directory / "setpriv"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return {"PATH": f"{directory}:{os.environ.get('PATH', '')}"}


def test_a_foreign_server_on_the_embedded_socket_is_refused_with_one_line(tmp_path, short_data_dir):
    short_data_dir.mkdir(mode=0o700)
    socket_path = short_data_dir / "redis.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as foreign:
        foreign.bind(str(socket_path))
        foreign.listen()
        server = without_admin_token(embedded(tmp_path, short_data_dir))
        assert server.start().wait(30) == 2
    line = refusal(server)
    assert line.endswith(
        f"{LEVEL_AND_LOGGER}MMSERVER_DATA_DIR: a server still answers on {socket_path} but is not the one "
        f"recorded in {short_data_dir / 'redis.pid'}; stop it before starting mmserver"), line
    assert not (short_data_dir / "admin.token").exists()
    assert redis_servers_for(short_data_dir) == []


def test_setpriv_refused_by_the_system_is_refused_with_one_line(tmp_path, short_data_dir):
    # What util-linux's setpriv does under a seccomp filter that denies capset (docs/DEPLOY.md).
    env = fake_setpriv(tmp_path, 'echo "setpriv: activate capabilities: Operation not permitted" >&2; exit 127')
    server = embedded(tmp_path, short_data_dir, env)
    assert server.start().wait(30) == 2
    line = refusal(server)
    assert line.endswith(
        f"{LEVEL_AND_LOGGER}MMSERVER_DATA_DIR: setpriv could not start the embedded redis-server (exit status "
        f"127): setpriv: activate capabilities: Operation not permitted; a system call filter must allow "
        f"capset (docs/DEPLOY.md)"), line


def test_an_append_only_file_redis_cannot_read_is_refused_with_one_line(tmp_path, short_data_dir):
    short_data_dir.mkdir(mode=0o700)
    (short_data_dir / "appendonly.aof").write_bytes(b"not an append-only file\r\n")
    server = embedded(tmp_path, short_data_dir)
    assert server.start().wait(30) == 2
    line = refusal(server)
    assert f"{LEVEL_AND_LOGGER}MMSERVER_DATA_DIR: embedded redis-server exited with status 1 before answering: " in line
    assert "Bad file format reading the append only file" in line, line
    assert line.endswith(f"(its log: {short_data_dir / 'redis.log'})"), line


def test_a_data_dir_file_mmserver_cannot_write_is_refused_with_one_line(tmp_path, short_data_dir):
    (short_data_dir / "redis.log").mkdir(parents=True)  # where the embedded Redis's output goes
    with SentrySink() as sink:
        server = embedded(tmp_path, short_data_dir, {"MMSERVER_SENTRY_DSN": sink.dsn})
        assert server.start().wait(30) == 2
        line = refusal(server)  # Sentry is on, but its "enabled" line waits until nothing is refused
        assert line.endswith(f"{LEVEL_AND_LOGGER}MMSERVER_DATA_DIR: cannot start the embedded Redis: Is a "
                             f"directory: {short_data_dir / 'redis.log'}"), line
        time.sleep(0.5)
        assert sink.events() == []  # a refusal is the operator's to fix, not an error report


def test_an_embedded_redis_killed_at_start_is_exit_1_and_reaches_sentry(tmp_path, short_data_dir):
    """Not an operator's to fix (a restart may well succeed): exit 1, no traceback, and Sentry hears
    of it, although the embedded Redis starts before anything else talks to the network."""
    env = fake_setpriv(tmp_path, "kill -9 $$")
    with SentrySink() as sink:
        server = embedded(tmp_path, short_data_dir, {**env, "MMSERVER_SENTRY_DSN": sink.dsn})
        assert server.start().wait(30) == 1
        reason = "start-up failed: embedded redis-server exited with status -9"
        event = sink.wait_for(lambda e: f"mmserver exiting with status 1: {reason}" in json.dumps(e), timeout=5)
    assert event is not None, sink.events()
    assert event["tags"]["exit_status"] == "1", event.get("tags")
    output = server.output()
    assert "Traceback" not in output, output
    assert f"ERROR mmserver.lifecycle: {reason}" in output, output
    assert server.lines[-1].endswith(f"exit status 1: {reason}: (no output)"), output
