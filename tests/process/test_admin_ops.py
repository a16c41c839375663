"""Operator actions on the real `mmserver` command, through mmadmin and its admin listener."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from tests.admin.test_cli import MMADMIN
from tests.process.harness import MMServer
from tests.redis_server import RedisServer
from tests.waiting import wait_until


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


CONFIG = """
[modes.duel]
accept_timeout_s = 0

[modes.ranked]
accept_timeout_s = 60

[servers]
token = "server-token-0123456789"
static = ["10.0.0.5:7777"]
"""


def start_with_a_server_pool(directory: Path, redis_url: str) -> MMServer:
    config = directory / "mm.toml"
    directory.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG)
    return MMServer(directory, redis_url=redis_url, env={"MMSERVER_CONFIG": str(config)}).start()


def view_when(server: MMServer, ticket: dict, status: str) -> dict:
    """The ticket's view once its status is `status` (waited for, 15 s at most)."""
    return wait_until(lambda: (lambda view: view if view["status"] == status else None)(
        server.get(f"/v1/tickets/{ticket['ticket_id']}", token=ticket["token"]).json()),
        timeout=15, what=f"{ticket['ticket_id']} {status}")


def test_an_operator_looks_up_and_finishes_a_match_and_releases_a_player(tmp_path: Path, redis_server):
    redis_server.client().flushall()
    server = start_with_a_server_pool(tmp_path, redis_server.url)
    try:
        server.wait_ready()
        alice = server.post("/v1/tickets", {"player_id": "alice", "mode": "duel", "mmr": 1500}).json()
        server.post("/v1/tickets", {"player_id": "bob", "mode": "duel", "mmr": 1510})
        carol = server.post("/v1/tickets", {"player_id": "carol", "mode": "duel", "mmr": 4000}).json()
        assigned = view_when(server, alice, "assigned")
        match_id = assigned["assignment"]["match_id"]

        looked_up = mmadmin(server, "match", match_id, "--json")
        assert looked_up.returncode == 0, looked_up.stderr
        match = json.loads(looked_up.stdout)
        assert match["match_id"] == match_id and "10.0.0.5:7777" in json.dumps(match)
        assert "alice" in json.dumps(match) and "bob" in json.dumps(match)
        as_text = mmadmin(server, "match", match_id)
        assert as_text.returncode == 0 and as_text.stdout.startswith(f"match {match_id}\n")

        player = mmadmin(server, "--json", "player", "alice")
        assert player.returncode == 0, player.stderr
        assert json.loads(player.stdout)["ticket"]["status"] == "assigned"

        # The console's list of running matches has it, as GET /admin/matches/{id} shows it.
        running = server.admin("/admin/matches").json()
        assert running["total"] == 1 and running["matches"] == [match]

        finished = mmadmin(server, "finish-match", match_id)
        assert finished.returncode == 0, finished.stderr
        assert server.admin("/admin/matches").json() == {"matches": [], "total": 0}
        view = server.get(f"/v1/tickets/{alice['ticket_id']}", token=alice["token"]).json()
        assert (view["status"], view["reason"]) == ("finished", "finished by operator")
        gone = mmadmin(server, "player", "alice")
        assert gone.returncode == 2
        assert gone.stderr.startswith("mmadmin: no player 'alice' on this service (404: ")

        released = mmadmin(server, "release", "carol", "--json")
        assert released.returncode == 0, released.stderr
        assert json.loads(released.stdout)["released"] is True
        view = server.get(f"/v1/tickets/{carol['ticket_id']}", token=carol["token"]).json()
        assert view["status"] == "cancelled"
        again = mmadmin(server, "release", "carol")
        assert again.returncode == 2 and "no player 'carol'" in again.stderr
        # carol may queue again at once
        assert server.post("/v1/tickets", {"player_id": "carol", "mode": "duel", "mmr": 4000}).status == 201

        nothing = mmadmin(server, "match", "m-nothing-here")
        assert nothing.returncode == 2 and "no match 'm-nothing-here'" in nothing.stderr
        assert server.admin("/admin/players/bad%20id").status == 400

        output = server.output()
        assert f"admin finish of match {match_id} requested from 127.0.0.1" in output
        assert f"match {match_id} finished on operator request" in output
        assert "admin release of player carol requested from 127.0.0.1" in output
        assert "player carol released on operator request" in output
        assert server.admin_token not in output
    finally:
        server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_a_match_still_in_its_ready_check_is_not_finished_but_its_players_can_be_released(
        tmp_path: Path, redis_server):
    redis_server.client().flushall()
    server = start_with_a_server_pool(tmp_path, redis_server.url)
    try:
        server.wait_ready()
        dana = server.post("/v1/tickets", {"player_id": "dana", "mode": "ranked", "mmr": 1500}).json()
        server.post("/v1/tickets", {"player_id": "eve", "mode": "ranked", "mmr": 1510})
        matched = view_when(server, dana, "matched")
        match_id = matched["session"]["session_id"]
        assert server.admin(f"/admin/matches/{match_id}").json()["state"] == "accepting"

        refused = server.admin(f"/admin/matches/{match_id}/finish", "POST")
        assert refused.status == 409, refused.body
        finished = mmadmin(server, "finish-match", match_id)
        assert finished.returncode == 2
        assert "answered 409 Match not running: " in finished.stderr and "(accepting)" in finished.stderr
        assert server.admin(f"/admin/matches/{match_id}").json()["state"] == "accepting"

        released = mmadmin(server, "release", "dana")
        assert released.returncode == 0, released.stderr
        view = server.get(f"/v1/tickets/{dana['ticket_id']}", token=dana["token"]).json()
        assert view["status"] == "cancelled"
    finally:
        server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_redis_away_is_503_with_retry_after_and_mmadmin_exits_1(tmp_path: Path):
    redis = RedisServer(tmp_path / "redis").start()
    server = MMServer(tmp_path / "mm", redis_url=redis.url).start()
    try:
        server.wait_ready()
        redis.stop()
        for method, path in [("GET", "/admin/players/alice"), ("DELETE", "/admin/players/alice"),
                             ("GET", "/admin/matches/m1"), ("POST", "/admin/matches/m1/finish")]:
            answer = server.admin(path, method)
            assert answer.status == 503, (path, answer.status, answer.body)
            assert int(answer.headers["Retry-After"]) > 0
            assert set(answer.json()) == {"title", "description"}
        result = mmadmin(server, "player", "alice")
        assert result.returncode == 1
        assert "answered 503" in result.stderr and len(result.stderr.splitlines()) == 1
    finally:
        server.signal(signal.SIGTERM)
        server.wait()
        redis.stop()
