"""One real `mmserver` process on an external real redis-server, shared by a test module.

The service runs with few worker threads (HTTP_THREADS) so that exhausting them is cheap to
attempt, a server token so that the dedicated-server endpoints are reachable, and two modes.
`Snapshot` is what "no state changed" is checked against: a ticket's status and version read
through the API, and every queue depth, session and server count from GET /admin/status.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.process.harness import MMServer, request
from tests.redis_server import RedisServer

SERVER_TOKEN = "server-secret-token"
ADMIN_TOKEN = "admin-secret-token"
HTTP_THREADS = 4
MAX_LONGPOLLS = 2
MAX_BODY_BYTES = 4096

CONFIG_TOML = f"""
[modes.duel]
team_size = 1
teams = 2

[modes.squad]
team_size = 3
teams = 2

[servers]
token = "{SERVER_TOKEN}"
"""


def start_service(directory: Path, redis_url: str, **env: str) -> MMServer:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "mmserver.toml"
    config.write_text(CONFIG_TOML)
    service = MMServer(directory, redis_url=redis_url, env={
        "MMSERVER_CONFIG": str(config),
        "MMSERVER_ADMIN_TOKEN": ADMIN_TOKEN,
        "MMSERVER_HTTP_THREADS": str(HTTP_THREADS),
        "MMSERVER_MAX_LONGPOLLS": str(MAX_LONGPOLLS),
        "MMSERVER_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "MMSERVER_LOG_LEVEL": "WARNING",
        **env,
    })
    return service.start().wait_ready()


@pytest.fixture(scope="module")
def hostile_redis(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("hostile-redis"), appendonly=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory, hostile_redis) -> Iterator[MMServer]:
    mmserver = start_service(tmp_path_factory.mktemp("hostile-mmserver"), hostile_redis.url)
    yield mmserver
    mmserver.kill()


_players = itertools.count()


@dataclass
class Ticket:
    ticket_id: str
    token: str
    player_id: str


def create_ticket(service: MMServer, mode: str = "squad", prefix: str = "player") -> Ticket:
    """A queued ticket. Squad (3v3) by default: one lone ticket is never matched, so its state
    changes only if a hostile call changes it."""
    player = f"{prefix}-{next(_players)}"
    answer = service.post("/v1/tickets", {"player_id": player, "mode": mode, "mmr": 1500})
    assert answer.status == 201, answer.body
    body = answer.json()
    return Ticket(body["ticket_id"], body["token"], player)


@dataclass(frozen=True)
class Snapshot:
    tickets: tuple[tuple[str, str, int], ...]  # (ticket_id, status, version)
    queues: tuple[tuple[str, int], ...]
    sessions: str
    servers: str
    lifecycle: tuple[str, bool]  # (state, ready): no hostile call may drain or stop the replica


def snapshot(service: MMServer, *tickets: Ticket) -> Snapshot:
    states = []
    for ticket in tickets:
        answer = service.get(f"/v1/tickets/{ticket.ticket_id}", token=ticket.token)
        assert answer.status == 200, answer.body
        body = answer.json()
        states.append((ticket.ticket_id, body["status"], body["version"]))
    status = request(service.admin_url + "/admin/status", token=ADMIN_TOKEN)
    assert status.status == 200, status.body
    body = status.json()
    queues = tuple(sorted((mode, depth["queued"]) for mode, depth in body["queues"].items()))
    return Snapshot(tuple(states), queues, repr(body.get("sessions")), repr(body.get("servers")),
                    (body["state"], body["ready"]))
