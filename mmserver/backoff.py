"""The reconnect schedule of the pub/sub subscriber: exponential, capped, finite.

Attempt 0 is the first reconnect after a loss and waits `initial_ms`; each next attempt waits
twice as long, never more than `max_ms`. After `attempts` failed reconnects the caller gives up
(the replica exits with status 1 and its supervisor restarts it), so an outage is either ridden
out or turned into a visible restart rather than a replica that silently serves nothing.

Jitter ("equal jitter", on by default): each delay is drawn uniformly from [d/2, d], d being the
exact delay above. Replicas that lost Redis in the same instant (a Redis restart, a failover)
would otherwise all reconnect, resubscribe and re-read every waiter's state in the same instant
again, attempt after attempt; drawn this way their attempts spread over half of each interval,
while no replica ever waits less than half the exact schedule (full jitter, [0, d], would let
some reconnect at once and hammer a Redis that is still coming up). `jitter=0` gives the exact
schedule.
"""
from __future__ import annotations

import random

EQUAL_JITTER = 0.5  # each delay uniform in [d/2, d]


class Backoff:
    def __init__(self, initial_ms: int, max_ms: int, attempts: int, *,
                 jitter: float = EQUAL_JITTER, rng: random.Random | None = None) -> None:
        """`jitter` (0..1) shortens each delay by up to that fraction, at random, so replicas
        that lost Redis together do not all reconnect in the same instant (module docstring);
        0 for the exact schedule. `rng`: a seeded generator for tests."""
        if initial_ms < 1:
            raise ValueError(f"initial_ms must be at least 1, got {initial_ms}")
        if max_ms < initial_ms:
            raise ValueError(f"max_ms ({max_ms}) is below initial_ms ({initial_ms})")
        if attempts < 0:
            raise ValueError(f"attempts must be at least 0, got {attempts}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.initial_ms = initial_ms
        self.max_ms = max_ms
        self.attempts = attempts
        self.jitter = jitter
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        """Seconds to wait before reconnect number `attempt` (0-based)."""
        if attempt < 0:
            raise ValueError(f"attempt must be at least 0, got {attempt}")
        # Compare before multiplying: 2**attempt for a large attempt is a huge int, not an error,
        # but there is no point computing it once the cap is reached.
        if attempt >= 63 or self.initial_ms << attempt >= self.max_ms:
            ms = float(self.max_ms)
        else:
            ms = float(self.initial_ms << attempt)
        if self.jitter:
            ms *= 1.0 - self.jitter * self._rng.random()
        return ms / 1000.0

    def schedule(self) -> list[float]:
        """Every delay, in order: one per allowed reconnect attempt."""
        return [self.delay(n) for n in range(self.attempts)]

    def __repr__(self) -> str:
        return (f"Backoff(initial_ms={self.initial_ms}, max_ms={self.max_ms}, "
                f"attempts={self.attempts}, jitter={self.jitter})")
