"""The one stop signal shared by every component of a replica.

Whoever asks first names the reason and the exit status; later requests are recorded in the log
by the caller but change nothing. Never call `request` from a signal handler: it takes a lock
(see lifecycle.py, where handlers only put into a SimpleQueue).
"""
from __future__ import annotations

import queue
import signal
import threading
from dataclasses import dataclass

EXIT_OK = 0  # the supervisor asked for the stop (SIGTERM, SIGINT)
EXIT_RESTART = 1  # something went wrong or an operator asked: restart me
EXIT_USAGE = 2  # invalid configuration: nothing was started, do not restart

# Who asked for the stop: a bounded label (the shutdowns metric), kept beside the free-text reason.
SIGNAL = "signal"  # the supervisor: SIGTERM, SIGINT
ADMIN = "admin"  # an operator, through the control plane
REDIS = "redis"  # Redis stayed unreachable beyond the reconnect budget
WORKER = "worker"  # a worker thread died or stalled
STARTUP = "startup"  # start-up failed after something had started
STOP_KINDS = (SIGNAL, ADMIN, REDIS, WORKER, STARTUP)

# SIGTERM and SIGINT received, as signal numbers, for the main loop (lifecycle.py) to turn into a
# stop request; it also puts None there to wake itself. Filled from the command's first line on
# (catch_stop_signals), so that a stop asked for while the stack is still being imported and
# started (the first second) is neither a death by signal nor a KeyboardInterrupt traceback.
STOP_SIGNALS: "queue.SimpleQueue[int | None]" = queue.SimpleQueue()


def catch_stop_signals() -> None:
    """Queue SIGTERM and SIGINT on STOP_SIGNALS instead of their default actions. The handler
    only puts the number (SimpleQueue.put is reentrant-safe: a lock taken in a handler could
    deadlock against the main thread)."""
    def handler(signum: int, frame: object) -> None:
        STOP_SIGNALS.put_nowait(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)


@dataclass(frozen=True)
class StopRequest:
    reason: str
    exit_status: int
    kind: str  # one of STOP_KINDS


class Shutdown:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._request: StopRequest | None = None
        self._listeners: list = []

    def request(self, reason: str, exit_status: int, kind: str) -> bool:
        """Ask every component to stop. Returns True if this call was the first one."""
        if kind not in STOP_KINDS:
            raise ValueError(f"unknown stop kind {kind!r}")
        with self._lock:
            if self._request is not None:
                return False
            self._request = StopRequest(reason, exit_status, kind)
            listeners = list(self._listeners)
        self._event.set()
        for listener in listeners:
            listener()
        return True

    def on_request(self, callback) -> None:
        """Call `callback()` (from the requesting thread) once a stop is requested."""
        with self._lock:
            if self._request is None:
                self._listeners.append(callback)
                return
        callback()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep up to `timeout` seconds or until a stop is requested; True if requested."""
        return self._event.wait(timeout)

    @property
    def reason(self) -> str | None:
        return self._request.reason if self._request else None

    @property
    def exit_status(self) -> int | None:
        return self._request.exit_status if self._request else None

    @property
    def stop_request(self) -> StopRequest | None:
        return self._request
