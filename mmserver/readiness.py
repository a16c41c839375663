"""Whether this replica should receive traffic, and which stage of its life it is in.

Not ready while Redis is unreachable (the subscriber reports it), while it answers but refuses
writes (a demoted master's READONLY, LOADING, OOM: the replica heartbeat's write reports it,
which the subscriber, only listening, cannot see), or while the replica drains:
an operator's drain, which an operator's undrain ends, or the stop sequence, which nothing ends.
Two separate flags, so that an undrain arriving while the replica stops cannot make it ready
again. The replica's `state` (starting, running, draining, stopping) is derived from the same
flags, so the status, the replica record and /readyz can never tell different stories.

Reading takes no lock (plain flags); the changes an operator and the stop sequence race on
(drain, undrain, stop) take one. A caller that also tells others about its change (the control
plane's answer, the status line systemd shows) holds `changing()` around both, so that an
undrain racing the stop can neither answer "running" nor leave systemd reading "ready" after
"stopping".
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

STARTING, RUNNING, DRAINING, STOPPING = "starting", "running", "draining", "stopping"


class Readiness:
    def __init__(self) -> None:
        self._draining = False  # an operator's drain
        self._stopping = False  # the stop sequence: for good
        self._redis_connected = False
        self._redis_writes = True  # until a write is refused: the first heartbeat is at start
        self._started = False
        self._changes = threading.RLock()

    @contextmanager
    def changing(self) -> Iterator["Readiness"]:
        """Hold off every other drain, undrain and stop while the caller changes the state and
        reports what it left."""
        with self._changes:
            yield self

    def mark_started(self) -> None:
        self._started = True

    def drain(self) -> bool:
        """An operator's drain: not ready and no new tickets until undrain(). True if this call
        changed anything."""
        with self._changes:
            was = self._draining or self._stopping
            self._draining = True
            return not was

    def undrain(self) -> bool | None:
        """End an operator's drain: True if it ended one, False if there was none, None if the
        replica is stopping (which nothing undoes)."""
        with self._changes:
            if self._stopping:
                return None
            was = self._draining
            self._draining = False
            return was

    def mark_stopping(self) -> None:
        """The stop sequence began: not ready and no new tickets, until the process exits."""
        with self._changes:
            self._stopping = True

    def set_redis_connected(self, connected: bool) -> None:
        self._redis_connected = connected

    def set_redis_writes(self, taken: bool) -> None:
        self._redis_writes = taken

    @property
    def state(self) -> str:
        if self._stopping:
            return STOPPING
        if not self._started:
            return STARTING
        return DRAINING if self._draining else RUNNING

    @property
    def draining(self) -> bool:
        """True while new tickets are refused: drained by an operator, or stopping."""
        return self._draining or self._stopping

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def redis_connected(self) -> bool:
        return self._redis_connected

    def check(self) -> tuple[bool, str]:
        """(ready, reason): reason names what is missing, "ready" otherwise."""
        if self.draining:
            return False, "draining"
        if not self._started:
            return False, "starting"
        if not self._redis_connected:
            return False, "redis unreachable"
        if not self._redis_writes:
            return False, "redis refuses writes"
        return True, "ready"
