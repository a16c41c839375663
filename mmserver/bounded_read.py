"""A read that costs a Redis round trip, with a bound on how long a caller waits for it.

/admin/status and /metrics report store stats. A frozen Redis (SIGSTOP, a stuck host) raises
nothing: a call waits for the socket timeout (5 s). The control plane must answer faster than
that, so the read runs in a thread of its own ("bounded-read-<name>") and callers wait at most
`wait_s` for it; past that they get the last value that did arrive, with its age, and the reason
the fresh one is missing. At most one read is in flight: while Redis hangs, later callers wait on
the same read instead of starting another, so a frozen Redis costs one blocked thread, not one
per request.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ReadTimedOut(TimeoutError):
    """The read did not answer within the caller's bound (it may still answer later)."""


@dataclass(frozen=True)
class Reading(Generic[T]):
    """`value`: the fresh value, else the last one that arrived (None if none ever did).
    `error`: why the fresh value is missing ("" when `value` is fresh). `age_s`: seconds since
    `value` was read (None if there is no value)."""

    value: T | None
    error: str
    age_s: float | None

    @property
    def fresh(self) -> bool:
        return not self.error


class BoundedRead(Generic[T]):
    def __init__(self, read: Callable[[], T], *, wait_s: float, name: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if wait_s <= 0:
            raise ValueError(f"wait_s must be positive, got {wait_s}")
        self._read = read
        self._wait_s = wait_s
        self._name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: threading.Event | None = None  # set when the read in flight ends
        self._outcome: tuple[bool, Any] = (False, None)  # (succeeded, value or exception)
        self._last: tuple[float, T] | None = None  # (when, value) of the last success

    def get(self) -> Reading[T]:
        """The value read now, or after `wait_s` the last one with the reason it is not fresh."""
        try:
            return Reading(self.fresh(), "", 0.0)
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
        with self._lock:
            last = self._last
        if last is None:
            return Reading(None, reason, None)
        when, value = last
        return Reading(value, reason, round(self._clock() - when, 3))

    def fresh(self) -> T:
        """The value read now; raises the read's own error, or ReadTimedOut after `wait_s`."""
        with self._lock:
            done = self._pending
            if done is None:  # no read in flight: start one; else wait for that one
                done = self._pending = threading.Event()
                threading.Thread(target=self._run, args=(done,), name=f"bounded-read-{self._name}",
                                 daemon=True).start()
        if not done.wait(self._wait_s):
            raise ReadTimedOut(f"no answer within {self._wait_s:g} s")
        with self._lock:
            succeeded, result = self._outcome
        if not succeeded:
            raise result
        return result

    def _run(self, done: threading.Event) -> None:
        # Error policy: whatever the read raises is the answer for the callers waiting on it,
        # logged at DEBUG (the callers report it); the thread itself never dies with it.
        try:
            value = self._read()
        except Exception as error:
            logger.debug("bounded read %s failed: %r", self._name, error)
            outcome: tuple[bool, Any] = (False, error)
        else:
            outcome = (True, value)
        with self._lock:
            self._outcome = outcome
            if outcome[0]:
                self._last = (self._clock(), outcome[1])
            self._pending = None
            done.set()
