"""Which failures are expected: Redis away is an outage to report in one line, not a bug.

A Redis outage makes every component fail at once (ticks, the replica heartbeat, the stop
sequence's last Redis write). Each of them is worth one line saying so; a traceback through
redis-py's connection code says nothing more and buries the lines that matter. Components take
a tuple of expected error types from the composition root (`REDIS_AWAY` in replica.py and lifecycle.py) and
keep tracebacks for everything else.
"""
from __future__ import annotations

import redis

from mmserver.store.errors import RedisUnavailable

# What a call to Redis raises when Redis is down, hung or failing over: redis-py's own errors
# and the store's wrapper around them (which also covers LOADING, READONLY, TRYAGAIN, ...).
REDIS_AWAY: tuple[type[BaseException], ...] = (
    RedisUnavailable,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


def caused_by(error: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """Whether `error`, or an exception it was explicitly raised from (`raise ... from`), is one
    of `kinds`. Not the implicit context: a bug in an `except ConnectionError:` block is a bug."""
    seen: set[int] = set()
    current: BaseException | None = error
    while kinds and current is not None and id(current) not in seen:
        if isinstance(current, kinds):
            return True
        seen.add(id(current))
        current = current.__cause__
    return False
