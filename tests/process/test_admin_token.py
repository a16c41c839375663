"""The generated admin token against the real `mmserver` command: reused across a restart, so
an `mmadmin watch` started before the restart keeps working after it; replaced, with the
reason in the log, when its file is no longer one to trust."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

from tests.admin.test_cli import MMADMIN
from tests.process.harness import MMServer


def without_token(directory: Path, redis_url: str, like: MMServer | None = None) -> MMServer:
    """A replica with no admin token configured (it generates or reuses its own); `like`: on
    the same ports as an earlier one, where an operator's mmadmin already points."""
    server = MMServer(directory, redis_url=redis_url)
    del server.env["MMSERVER_ADMIN_TOKEN"]
    if like is not None:
        server.port, server.admin_port = like.port, like.admin_port
        server.env["MMSERVER_LISTEN"] = like.env["MMSERVER_LISTEN"]
        server.env["MMSERVER_ADMIN_LISTEN"] = like.env["MMSERVER_ADMIN_LISTEN"]
    return server


def token_file(directory: Path) -> Path:
    return directory / "data" / "admin.token"


def test_the_token_survives_a_restart_and_so_does_mmadmin_watch(tmp_path: Path, redis_server):
    first = without_token(tmp_path, redis_server.url).start()
    watcher = None
    try:
        first.wait_ready()
        path = token_file(tmp_path)
        token = path.read_text().strip()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert "generated an admin token in" in first.output()
        assert first.admin("/admin/status", token=token).status == 200
        first_replica = first.admin("/admin/status", token=token).json()["replica"]

        # The operator's watch reads the token file once, at its start.
        watcher = subprocess.Popen(
            MMADMIN + ["--json", "watch", "--interval", "0.2"], cwd=tmp_path,
            env={"PATH": os.environ.get("PATH", ""),
                 "MMSERVER_ADMIN_LISTEN": first.env["MMSERVER_ADMIN_LISTEN"],
                 "MMSERVER_DATA_DIR": str(tmp_path / "data")},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert json.loads(watcher.stdout.readline())["replica"] == first_replica

        first.signal(signal.SIGTERM)
        assert first.wait() == 0
        second = without_token(tmp_path, redis_server.url, like=first).start()
        try:
            second.wait_ready()
            assert "reusing the admin token in" in second.output()
            assert path.read_text().strip() == token
            assert second.admin("/admin/status", token=token).status == 200
            second_replica = second.admin("/admin/status", token=token).json()["replica"]
            assert second_replica != first_replica

            # Every refresh prints a line (a status, or the error while nothing listened), so
            # readline() never blocks for long; the watch must reach the new replica.
            seen, deadline = [], time.monotonic() + 20
            while time.monotonic() < deadline:
                frame = json.loads(watcher.stdout.readline())
                seen.append(frame.get("replica") or frame.get("error"))
                if frame.get("replica") == second_replica:
                    break
            assert seen[-1] == second_replica, seen
            assert not any("token was refused" in str(entry) for entry in seen), seen
            assert watcher.poll() is None  # still watching
            for line in first.lines + second.lines:
                assert token not in line
        finally:
            second.signal(signal.SIGTERM)
            assert second.wait() == 0
    finally:
        if watcher is not None:
            watcher.kill()
            watcher.communicate(timeout=10)
        first.kill()


def test_a_token_file_others_may_read_is_replaced_at_the_next_start(tmp_path: Path, redis_server):
    first = without_token(tmp_path, redis_server.url).start()
    try:
        first.wait_ready()
    finally:
        first.signal(signal.SIGTERM)
    assert first.wait() == 0
    path = token_file(tmp_path)
    old = path.read_text().strip()
    path.chmod(0o644)

    second = without_token(tmp_path, redis_server.url).start()
    try:
        second.wait_ready()
        new = path.read_text().strip()
        assert new and new != old
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert "generated a new admin token in" in second.output()
        assert "mode 0644: group or others may use it" in second.output()
        assert second.admin("/admin/status", token=old).status == 401
        assert second.admin("/admin/status", token=new).status == 200
    finally:
        second.signal(signal.SIGTERM)
        assert second.wait() == 0
