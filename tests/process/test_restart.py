"""The restart path, proven under a supervisor with systemd's semantics:
Restart=on-failure (restart after a non-zero exit, not after 0) and RestartPreventExitStatus=2.
"""
from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from tests.process.harness import MMServer

RESTART_PREVENT_EXIT_STATUS = {2}


class OnFailureSupervisor:
    """Runs one mmserver and restarts it as systemd's Restart=on-failure would."""

    def __init__(self, make_server, restart_sec: float = 0.1, max_starts: int = 5) -> None:
        self._make_server = make_server
        self._restart_sec = restart_sec
        self._max_starts = max_starts
        self.exits: list[int] = []
        self.starts = 0
        self.current: MMServer | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "OnFailureSupervisor":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set() and self.starts < self._max_starts:
            # `current` is replaced before `starts` counts it: wait_for_start(n) must never
            # hand back the replica that has just exited.
            self.current = self._make_server().start()
            self.starts += 1
            status = self.current.wait(120)
            self.exits.append(status)
            if status == 0 or status in RESTART_PREVENT_EXIT_STATUS:
                return  # a clean stop, or a configuration the next start would refuse too
            self._stop.wait(self._restart_sec)

    def wait_for_start(self, number: int, timeout: float = 30) -> MMServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.starts >= number and self.current is not None:
                return self.current
            time.sleep(0.02)
        raise AssertionError(f"start {number} never happened; exits: {self.exits}")

    def stop(self) -> None:
        """No more restarts, and the running replica killed: a failed test leaves nothing
        behind to act on the shared Redis of the tests after it."""
        self._stop.set()
        if self.current is not None:
            self.current.kill()
        self._thread.join(30)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "supervisor still running"


def test_admin_shutdown_exits_1_and_the_restarted_replica_serves_every_ticket(tmp_path: Path, redis_server):
    redis_server.client().flushall()
    supervisor = OnFailureSupervisor(lambda: MMServer(tmp_path, redis_url=redis_server.url)).start()
    try:
        first = supervisor.wait_for_start(1).wait_ready()
        tickets = [first.post("/v1/tickets", {"player_id": f"p{n}", "mode": "duel", "mmr": 1000 + 500 * n}).json()
                   for n in range(4)]  # far apart in MMR: they stay queued across the restart
        before = {t["ticket_id"]: first.get(f"/v1/tickets/{t['ticket_id']}", token=t["token"]).json() for t in tickets}

        started = time.monotonic()
        assert first.admin("/admin/shutdown", "POST", {"reason": "restart drill"}).status == 202
        second = supervisor.wait_for_start(2).wait_ready()
        print(f"admin shutdown to ready again: {time.monotonic() - started:.2f} s")
        assert supervisor.exits == [1]
        assert "exit status 1: admin shutdown: restart drill" in first.output()
        for ticket in tickets:
            view = second.get(f"/v1/tickets/{ticket['ticket_id']}", token=ticket["token"]).json()
            assert view["status"] == "queued"
            assert view["enqueued_at"] == before[ticket["ticket_id"]]["enqueued_at"]
            assert view["player_id"] == before[ticket["ticket_id"]]["player_id"]
        # A SIGTERM is a clean stop: on-failure does not restart it.
        second.signal(signal.SIGTERM)
        supervisor.join(30)
        assert supervisor.exits == [1, 0] and supervisor.starts == 2
    finally:
        supervisor.stop()


def test_exit_2_is_not_restarted(tmp_path: Path):
    supervisor = OnFailureSupervisor(
        lambda: MMServer(tmp_path, env={"MMSERVER_TICK_INTERVAL_MS": "often"})).start()
    supervisor.join(60)
    assert supervisor.exits == [2] and supervisor.starts == 1
