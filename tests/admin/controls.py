"""A hand-written Control for the control-plane tests: records calls, answers like the service."""
from __future__ import annotations

import json
import threading
from pathlib import Path

from mmserver.store import NotFound

TOKEN = "tok-7fQ2xV9pLm3Rz8Ks"

STATUS = {
    "state": "running",
    "reason": None,
    "uptime_s": 3725.4,
    "replica_id": "replica-a1",
    "workers": {
        "http": {"alive": True, "in_flight": 0},
        "scheduler": {"alive": True, "last_tick_age_s": 0.42},
        "subscriber": {"alive": False, "reconnect_attempts": 3},
    },
    "queues": {"duel": {"queued": 4, "oldest_wait_s": 2.5, "matched": 2, "assigned": 6}},
    "sessions": {"accepting": 1, "allocating": 0, "assigned": 3},
    "servers": {"free": 2, "busy": 3, "stale": 0},
    "replicas": [{"id": "replica-a1", "host": "node-1"}, {"id": "replica-b2", "host": "node-2"}],
}


MATCH = {
    "match_id": "m-7Qx2",
    "mode": "duel",
    "region": None,
    "state": "assigned",
    "server": "10.0.0.5:7777",
    "created_at": 1718000000.5,
    "teams": [
        {"players": [{"player_id": "alice", "ticket_id": "t-alice", "mmr": 1010}]},
        {"players": [{"player_id": "bob", "ticket_id": "t-bob", "mmr": 990}]},
    ],
}

PLAYER = {
    "player_id": "alice",
    "ticket": {"ticket_id": "t-alice", "status": "assigned", "mode": "duel", "mmr": 1010,
               "party": [], "enqueued_at": 1717999990.25,
               "assignment": {"match_id": "m-7Qx2", "server": "10.0.0.5:7777",
                              "players": ["alice", "bob"]}},
}


class RecordingControl:
    """Answers like the service: status from a fixed document, matches and players from two
    dicts (NotFound for any other id); `fail` is raised by every call but status (e.g. Redis
    unavailable); `stopping` makes undrain answer as a replica in its stop sequence does."""

    def __init__(self, status: dict | None = None, fail_status: Exception | None = None, *,
                 fail: Exception | None = None, stopping: bool = False) -> None:
        self.calls: list[tuple] = []
        self._lock = threading.Lock()  # the CLI tests call it from the server thread
        self._status = json.loads(json.dumps(STATUS)) if status is None else status
        self._fail_status = fail_status
        self._fail = fail
        self._stopping = stopping
        self.matches = {MATCH["match_id"]: json.loads(json.dumps(MATCH))}
        self.players = {PLAYER["player_id"]: json.loads(json.dumps(PLAYER))}

    def _record(self, *call) -> None:
        with self._lock:
            self.calls.append(call)
        if self._fail is not None:
            raise self._fail

    def request_shutdown(self, reason: str) -> dict:
        with self._lock:
            self.calls.append(("request_shutdown", reason))
        return {"state": "stopping", "reason": reason, "exit_status": 1}

    def drain(self) -> dict:
        with self._lock:
            self.calls.append(("drain",))
        return {"state": "draining", "reason": "admin drain"}

    def undrain(self) -> dict:
        self._record("undrain")
        if self._stopping:
            return {"state": "stopping", "accepting_tickets": False, "reason": "SIGTERM received"}
        return {"state": "running", "accepting_tickets": True, "ready": True, "readiness": "ready"}

    def match(self, match_id: str) -> dict:
        self._record("match", match_id)
        if match_id not in self.matches:
            raise NotFound(f"No match {match_id!r}.")
        return self.matches[match_id]

    def running_matches(self, limit: int) -> dict:
        self._record("running_matches", limit)
        return {"matches": list(self.matches.values())[:limit], "total": len(self.matches)}

    def finish_match(self, match_id: str) -> dict:
        self._record("finish_match", match_id)
        if match_id not in self.matches:
            raise NotFound(f"No match {match_id!r}.")
        return {"match_id": match_id, "status": "finished", "players": ["alice", "bob"]}

    def player(self, player_id: str) -> dict:
        self._record("player", player_id)
        if player_id not in self.players:
            raise NotFound(f"Player {player_id!r} holds no live ticket.")
        return self.players[player_id]

    def release_player(self, player_id: str) -> dict:
        self._record("release_player", player_id)
        if player_id not in self.players:
            raise NotFound(f"Player {player_id!r} holds no live ticket.")
        ticket = dict(self.players[player_id]["ticket"], status="finished", reason="released")
        return {"player_id": player_id, "released": True, "ticket": ticket}

    def dead_letters(self, after: str | None, limit: int) -> dict:
        self._record("dead_letters", after, limit)
        return {"dead_letters": [], "next": after or "0-0", "total": 0}

    def replay_dead_letters(self, ids: list[str] | None) -> dict:
        self._record("replay_dead_letters", ids)
        return {"replayed": len(ids or []), "not_found": []}

    def discard_dead_letters(self, ids: list[str] | None) -> dict:
        self._record("discard_dead_letters", ids)
        return {"discarded": len(ids or [])}

    def status(self) -> dict:
        with self._lock:
            self.calls.append(("status",))
        if self._fail_status is not None:
            raise self._fail_status
        return self._status


def metrics() -> tuple[bytes, str]:
    return b"# TYPE mm_tickets_queued gauge\nmm_tickets_queued 4\n", "text/plain; version=0.0.4; charset=utf-8"


def write_token(path: Path, token: str = TOKEN) -> Path:
    path.write_text(token + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path
