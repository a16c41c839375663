"""A hand-written Control for the control-plane tests: records calls, answers like the service."""
from __future__ import annotations

import json
import threading
from pathlib import Path

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


class RecordingControl:
    def __init__(self, status: dict | None = None, fail_status: Exception | None = None) -> None:
        self.calls: list[tuple] = []
        self._lock = threading.Lock()  # the CLI tests call it from the server thread
        self._status = json.loads(json.dumps(STATUS)) if status is None else status
        self._fail_status = fail_status

    def request_shutdown(self, reason: str) -> dict:
        with self._lock:
            self.calls.append(("request_shutdown", reason))
        return {"state": "stopping", "reason": reason, "exit_status": 1}

    def drain(self) -> dict:
        with self._lock:
            self.calls.append(("drain",))
        return {"state": "draining", "reason": "admin drain"}

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
