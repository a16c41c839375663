"""When a failed delivery is tried again, and when it is given up (pure: no Redis, no clock).

Attempt n (1-based, Redis's delivery count) failed: the next one waits
min(backoff_max_s, backoff_initial_s * 2**(n-1)), and never less than the request timeout plus a
margin, so that a retry by another replica does not race an attempt still waiting for its answer.
After `max_attempts` failed attempts the event is a dead letter.
"""
from __future__ import annotations

from dataclasses import dataclass

# Added to the request timeout in the shortest retry delay: connect, send and read each have
# the timeout, so an attempt can outlast it a little.
IN_FLIGHT_MARGIN_S = 1.0


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_initial_s: float
    backoff_max_s: float
    timeout_s: float

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")

    def delay(self, attempts: int) -> float:
        """Seconds between attempt `attempts` (failed) and the next one."""
        exponent = max(0, attempts - 1)
        backoff = self.backoff_max_s if exponent >= 63 else min(self.backoff_max_s,
                                                                 self.backoff_initial_s * 2 ** exponent)
        return max(backoff, self.shortest_delay)

    @property
    def shortest_delay(self) -> float:
        return self.timeout_s + IN_FLIGHT_MARGIN_S

    def due(self, attempts: int, idle_s: float) -> bool:
        """Whether an event attempted `attempts` times, the last one `idle_s` ago, is retried now."""
        return idle_s >= self.delay(attempts)

    def exhausted(self, attempts: int) -> bool:
        """Whether no attempt is left after `attempts` failed ones."""
        return attempts >= self.max_attempts
