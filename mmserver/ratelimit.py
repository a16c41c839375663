"""Token buckets per credential, kept in this replica's memory.

Limits are per replica, on purpose: checking them in Redis would add a round trip to every
poll, and every deployment shares one Redis (docs/PERFORMANCE.md). A client spread over N
replicas by its load balancer gets at most N times its budget, which still bounds it; a
client in a tight loop on one replica is refused here, before any Redis work, without slowing
anyone else. Memory is bounded: past `max_keys` buckets, the oldest are dropped (a dropped
bucket restarts full, which only ever errs towards letting a request through).
"""
from __future__ import annotations

import math
import threading
import time
from typing import Callable

DEFAULT_MAX_KEYS = 100_000


class TokenBuckets:
    """`rate` tokens a second up to `burst`; each allowed request takes one."""

    def __init__(self, rate_per_s: float, burst: int, *, max_keys: int = DEFAULT_MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """0.0 if the request may go ahead (a token was taken), else the seconds until one
        will be available (what Retry-After should say)."""
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - at) * self._rate)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - tokens) / self._rate
            if len(self._buckets) >= self._max_keys:
                # Re-inserted keys go to the end, so the first is the least recently used.
                del self._buckets[next(iter(self._buckets))]
            self._buckets[key] = (tokens, now)
        return wait


# A wait shown to a client is at most a day: a tiny configured rate (1e-300 per second) gave
# a Retry-After of 300 digits, and no client acts on more.
MAX_RETRY_AFTER_S = 86_400


def retry_after(wait_s: float) -> str:
    """A Retry-After value in whole seconds, from 1 to MAX_RETRY_AFTER_S."""
    return str(max(1, min(MAX_RETRY_AFTER_S, math.ceil(min(wait_s, MAX_RETRY_AFTER_S)))))
