"""The processes of a chaos run: one redis-server with a durable AOF, and replicas kept alive by
a supervisor that restarts them the way systemd's Restart=on-failure does.
"""
from __future__ import annotations

import logging
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.process.harness import MMServer, request
from tests.redis_server import RedisServer
from tests.waiting import wait_until

logger = logging.getLogger(__name__)

EXIT_USAGE = 2


class DurableRedis(RedisServer):
    """A RedisServer whose AOF is fsynced before every reply (`--appendfsync always`), so a
    write acknowledged to mmserver survives a SIGKILL; restarted from that AOF on its port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        super().__init__(directory, port, appendonly=True, appendfsync="always")


@dataclass
class ExitRecord:
    replica: int
    generation: int
    status: int
    cause: str  # the fault that asked for it, "redis" for an outage window, "final", or "none"
    expected: tuple[int, ...]
    at: float
    last_line: str

    @property
    def kind(self) -> str:
        return f"signal {-self.status}" if self.status < 0 else f"exit {self.status}"

    @property
    def unexpected(self) -> bool:
        return self.status not in self.expected


@dataclass
class Slot:
    index: int
    directory: Path
    server: MMServer | None = None
    generation: int = 0
    ready: bool = False
    # What the next exit is expected to be, set by whoever causes it before acting.
    cause: str = "none"
    expected: tuple[int, ...] = ()
    thread: threading.Thread | None = None
    stopped: bool = False  # gave up (exit 2): never restarted


class Supervisor:
    """Keeps `count` replicas running: restart after any exit (non-zero as Restart=on-failure,
    zero as a rolling deploy would), never after exit 2, which would be a bug in itself."""

    def __init__(self, directory: Path, count: int, *, redis_url: str, env: dict[str, str],
                 restart_delay_s: float, redis_outage: "OutageClock") -> None:
        self._directory = Path(directory)
        self._redis_url = redis_url
        self._env = env
        self._restart_delay_s = restart_delay_s
        self._outage = redis_outage
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.slots = [Slot(i, self._directory / f"replica-{i}") for i in range(count)]
        self.exits: list[ExitRecord] = []
        self.starts = 0

    # --- running ---

    def start(self) -> None:
        for slot in self.slots:
            slot.thread = threading.Thread(target=self._keep_alive, args=(slot,), name=f"supervise-{slot.index}",
                                           daemon=True)
            slot.thread.start()

    def _keep_alive(self, slot: Slot) -> None:
        while not self._stop.is_set():
            slot.generation += 1
            server = MMServer(slot.directory / f"gen-{slot.generation}", redis_url=self._redis_url, env=self._env)
            with self._lock:
                slot.cause, slot.expected, slot.ready = "none", (), False
                slot.server = server
                self.starts += 1
            server.start()
            self._wait_ready(slot, server)
            status = self._wait_exit(server)
            self._record_exit(slot, server, status)
            if status == EXIT_USAGE:
                slot.stopped = True
                logger.error("replica %d exited 2: not restarting (a restart could not help)", slot.index)
                return
            if self._stop.wait(self._restart_delay_s):
                return

    def _wait_ready(self, slot: Slot, server: MMServer) -> None:
        while not self._stop.is_set() and server.process.poll() is None:
            try:
                if request(server.url + "/readyz", timeout=1).status == 200:
                    slot.ready = True
                    return
            except OSError:
                pass
            time.sleep(0.1)

    def _wait_exit(self, server: MMServer) -> int:
        while True:
            try:
                return server.process.wait(0.5)
            except subprocess.TimeoutExpired:
                continue

    def _record_exit(self, slot: Slot, server: MMServer, status: int) -> None:
        if server._reader:
            server._reader.join(5)
        with self._lock:
            slot.ready = False
            cause, expected = slot.cause, slot.expected
            if status == 1 and self._outage.explains(time.monotonic()) and 1 not in expected:
                # Redis unreachable after the last reconnect attempt: the outage got there first
                # (or alone).
                cause, expected = ("redis" if cause == "none" else f"{cause}+redis"), (*expected, 1)
            lines = [line for line in server.lines if line.strip()]
            record = ExitRecord(slot.index, slot.generation, status, cause, expected, time.time(),
                                lines[-1] if lines else "")
            self.exits.append(record)
        (server.directory / "output.log").write_text(server.output() + "\n")
        if record.unexpected:
            logger.warning("replica %d gen %d: %s (cause %s, expected %s): %s", slot.index, slot.generation,
                           record.kind, cause, expected, record.last_line)

    # --- what clients and the injector see ---

    def ready_urls(self) -> list[str]:
        with self._lock:
            return [s.server.url for s in self.slots if s.ready and s.server is not None]

    def ready_slots(self) -> list[Slot]:
        with self._lock:
            return [s for s in self.slots if s.ready and s.server is not None]

    def expect_exit(self, slot: Slot, cause: str, expected: tuple[int, ...]) -> MMServer | None:
        """Mark the running replica of `slot` as about to stop for `cause`; returns it."""
        with self._lock:
            if slot.server is None or not slot.ready or slot.server.process.poll() is not None:
                return None
            slot.cause, slot.expected = cause, expected
            return slot.server

    def forget_expectation(self, slot: Slot) -> None:
        with self._lock:
            slot.cause, slot.expected = "none", ()

    def all_ready(self) -> bool:
        """Every replica running and answering /readyz 200 now (Redis reachable again)."""
        with self._lock:
            slots = [s for s in self.slots if not s.stopped]
            if not all(s.ready and s.server is not None and s.server.process.poll() is None for s in slots):
                return False
            servers = [s.server for s in slots]
        for server in servers:
            try:
                if request(server.url + "/readyz", timeout=1).status != 200:
                    return False
            except OSError:
                return False
        return True

    def wait_all_ready(self, timeout: float) -> bool:
        return bool(wait_until(self.all_ready, timeout, interval=0.1))

    # --- stopping ---

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every replica (exit 0 expected) and stop restarting them."""
        self._stop.set()
        with self._lock:
            servers = []
            for slot in self.slots:
                if slot.server is not None and slot.server.process and slot.server.process.poll() is None:
                    slot.cause, slot.expected = "final", (0,)
                    servers.append(slot.server)
        for server in servers:
            try:
                server.signal(15)
            except ProcessLookupError:
                pass
        for slot in self.slots:
            if slot.thread:
                slot.thread.join(timeout)
        for server in servers:  # anything still alive after the deadline is a hang: kill it
            if server.process.poll() is None:
                logger.error("replica still running %.0f s after SIGTERM: killing it", timeout)
                server.kill()


@dataclass
class OutageClock:
    """Windows during which Redis was disrupted: a replica exiting 1 then is explained
    (Redis unreachable after the last reconnect attempt)."""

    margin_s: float
    windows: list[list[float]] = field(default_factory=list)

    def begin(self) -> None:
        self.windows.append([time.monotonic(), float("inf")])

    def end(self) -> None:
        if self.windows and self.windows[-1][1] == float("inf"):
            self.windows[-1][1] = time.monotonic()

    def explains(self, at: float) -> bool:
        return any(start <= at <= end + self.margin_s for start, end in self.windows)
