"""Starts refused (exit 2, one line) against the real `mmserver` command: the Redis URL, and a
refusal's line whatever the log level."""
from __future__ import annotations

import json
import os
import socket

import pytest

from tests.process.harness import MMServer

LEVEL_AND_LOGGER = " ERROR mmserver.lifecycle: "


def refusal(server: MMServer) -> str:
    """The one line a refused start printed (exit 2)."""
    lines = [line for line in server.lines if line.strip()]
    assert len(lines) == 1, server.output()
    return lines[0]


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
