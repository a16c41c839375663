"""The stale-reply guard that every mmserver Redis connection carries.

Every client from `connect` and `connect_subscriber`, whatever the URL, guards against stale
replies (`ReplyGuard`): a connection counts the replies it owes (one per command sent, read off
as they come) and a connection released while it still owes any is closed instead of reused. A
call interrupted between its send and its read (an asynchronous exception, a signal handler's
SystemExit) would otherwise leave its reply for the next caller of that connection to read as
its own: redis-py 8's pools do not look for unread data at checkout under its defaults (RESP3,
maintenance notifications "auto"), and a reply still on its way cannot be seen by any look.
One counter covers every path (plain commands, pipelines, MULTI/EXEC, the scripts' EVALSHA).
"""
from __future__ import annotations

import functools
import logging
from typing import Any

import redis
from redis.sentinel import SentinelConnectionPool

logger = logging.getLogger(__name__)


class ReplyGuard:
    """Connection mixin: `replies_owed` counts the replies sent for and not yet read.

    Incremented before a command goes out (`send_command`, or `pack_commands` for a pipeline's
    batch, which redis-py always sends right after packing), decremented for each reply read
    whole (an error reply included), reset when the socket is closed. redis-py closes the
    socket itself when a send or a read fails with an exception it sees; what it cannot see is
    an exception raised between the two, or between two replies of a pipeline. `ReplyGuardPool`
    closes such a connection when it comes back.

    Push messages (pub/sub) read while nothing is owed leave the count at 0; a pub/sub
    connection is closed by redis-py before it goes back to the pool anyway.
    """

    replies_owed = 0

    def send_command(self, *args: Any, **kwargs: Any) -> None:
        self.replies_owed += 1
        super().send_command(*args, **kwargs)

    def pack_commands(self, commands: Any) -> list:
        commands = list(commands)
        packed = super().pack_commands(commands)
        self.replies_owed += len(commands)
        return packed

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = super().read_response(*args, **kwargs)
        except redis.ResponseError:  # an error reply, read whole
            if self.replies_owed:
                self.replies_owed -= 1
            raise
        if self.replies_owed:
            self.replies_owed -= 1
        return response

    def disconnect(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().disconnect(*args, **kwargs)
        finally:
            self.replies_owed = 0


class ReplyGuardPool:
    """Pool mixin: a connection released while it owes replies is closed (the pool reconnects
    it at its next checkout) rather than handed to the next caller."""

    def release(self, connection: Any) -> None:
        if getattr(connection, "replies_owed", 0):
            logger.debug("closing a pooled Redis connection released with %d replies unread",
                         connection.replies_owed)
            connection.disconnect()
        super().release(connection)


class GuardedConnectionPool(ReplyGuardPool, redis.ConnectionPool):
    """redis-py's pool with the stale-reply guard (TLS URLs, the subscriber, `lean=False`)."""


class GuardedSentinelConnectionPool(ReplyGuardPool, SentinelConnectionPool):
    """redis-py's Sentinel pool with the stale-reply guard."""


@functools.cache
def guarded(connection_class: type) -> type:
    """`connection_class` with `ReplyGuard` mixed in (itself if it has it already)."""
    if issubclass(connection_class, ReplyGuard):
        return connection_class
    return type(f"Guarded{connection_class.__name__}", (ReplyGuard, connection_class), {})


