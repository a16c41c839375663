"""Whether this replica should receive traffic: the answer behind /readyz.

Not ready while Redis is unreachable (the subscriber reports it) or while the replica drains:
an operator's drain, which an operator's undrain ends, or the stop sequence, which nothing ends.
Two separate flags, so that an undrain arriving while the replica stops cannot make it ready
again. Flags only: reading them takes no lock.
"""
from __future__ import annotations


class Readiness:
    def __init__(self) -> None:
        self._draining = False  # an operator's drain
        self._stopping = False  # the stop sequence: for good
        self._redis_connected = False
        self._started = False

    def mark_started(self) -> None:
        self._started = True

    def mark_draining(self) -> None:
        """An operator's drain: not ready and no new tickets until mark_undrained()."""
        self._draining = True

    def mark_undrained(self) -> None:
        """End an operator's drain. A stop sequence under way still drains."""
        self._draining = False

    def mark_stopping(self) -> None:
        """The stop sequence began: not ready and no new tickets, until the process exits."""
        self._stopping = True

    def set_redis_connected(self, connected: bool) -> None:
        self._redis_connected = connected

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
        return True, "ready"
