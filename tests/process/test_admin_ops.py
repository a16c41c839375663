"""Operator actions on the real `mmserver` command, through mmadmin and its admin listener."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.admin.test_cli import MMADMIN
from tests.process.harness import MMServer


def mmadmin(server: MMServer, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", ""), "MMADMIN_URL": server.admin_url,
           "MMSERVER_ADMIN_TOKEN": server.admin_token}
    return subprocess.run(MMADMIN + list(args), env=env, capture_output=True, text=True, timeout=30)


def test_drain_then_undrain_takes_tickets_and_is_ready_again(tmp_path: Path, redis_server):
    redis_server.client().flushall()
    server = MMServer(tmp_path, redis_url=redis_server.url).start()
    try:
        server.wait_ready()
        drained = mmadmin(server, "drain")
        assert drained.returncode == 0, drained.stderr
        assert server.get("/readyz").status == 503
        refused = server.post("/v1/tickets", {"player_id": "op-1", "mode": "duel", "mmr": 1000})
        assert refused.status == 503 and "Retry-After" in refused.headers
        assert server.admin("/admin/status").json()["state"] == "draining"

        undrained = mmadmin(server, "undrain", "--json")
        assert undrained.returncode == 0, undrained.stderr
        assert '"accepting_tickets": true' in undrained.stdout
        assert server.get("/readyz").status == 200
        assert server.post("/v1/tickets", {"player_id": "op-1", "mode": "duel", "mmr": 1000}).status == 201
        assert server.admin("/admin/status").json()["state"] == "running"
        output = server.output()
        assert "admin drain requested from 127.0.0.1" in output
        assert "admin undrain requested from 127.0.0.1" in output
        assert "undrained on operator request" in output
        assert server.admin_token not in output
    finally:
        server.signal(signal.SIGTERM)
    assert server.wait() == 0
