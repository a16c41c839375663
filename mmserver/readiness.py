"""Whether this replica should receive traffic: the answer behind /readyz.

Not ready while Redis is unreachable (the subscriber reports it) or while the replica drains
(an operator's drain, or the start of the stop sequence). Flags only: reading them takes no lock.
"""
from __future__ import annotations


class Readiness:
    def __init__(self) -> None:
        self._draining = False
        self._redis_connected = False
        self._started = False

    def mark_started(self) -> None:
        self._started = True

    def mark_draining(self) -> None:
        self._draining = True

    def set_redis_connected(self, connected: bool) -> None:
        self._redis_connected = connected

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def redis_connected(self) -> bool:
        return self._redis_connected

    def check(self) -> tuple[bool, str]:
        """(ready, reason): reason names what is missing, "ready" otherwise."""
        if self._draining:
            return False, "draining"
        if not self._started:
            return False, "starting"
        if not self._redis_connected:
            return False, "redis unreachable"
        return True, "ready"
