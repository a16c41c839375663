"""The pub/sub thread: listens on `mm:events` and hands messages on.

It owns its reconnect loop. redis-py's built-in retries sleep in `time.sleep`, which a shutdown
cannot interrupt, so the client it is given should not retry (see
`redis_client.connect_subscriber`); every wait here is `shutdown.wait(delay)`.

Pub/sub does not buffer: whatever was published while the connection was down is gone. After
every (re)connect `on_connect()` is called so the caller can make every waiter re-read state.

A hung server (SIGSTOP, a frozen VM) raises nothing: the kernel still ACKs, so TCP keepalive and
socket reads just wait. Liveness therefore rests on one mechanism, redis-py's own health check:
the client from `connect` must have `health_check_interval` set (`connect_subscriber` does).
Whenever the connection has read nothing for that interval, `get_message()` sends
`PING redis-py-health-check`, counts it in `pubsub.health_check_response_counter` and swallows
the PONG, which brings the count back to 0. The thread treats the connection as lost when that
count stays above 0 for `HUNG_AFTER_INTERVALS * health_interval_s`: on a healthy Redis it is
back to 0 within milliseconds; an idle period alone never counts, it only causes a PING.

The thread sends no PING of its own. It used to, next to redis-py's, and redis-py 8 speaks RESP3
by default: there a PING sent while subscribed is answered with a plain reply, not a
`["pong", token]` pub/sub message, and `PubSub.handle_message` misparses it (a short token even
raises IndexError), so the thread's own PONGs were never recognised and every connection was
declared hung `HUNG_AFTER_INTERVALS` intervals after its first PING. redis-py recognises its own
health-check reply in both protocols.

Error policy: connection errors are retried with `Backoff`; after `backoff.attempts` failed
reconnects the replica asks to stop ("redis unreachable", status 1) so its supervisor restarts
it. Anything else (a bug, or `on_message` raising) is logged with its traceback and also stops
the replica: a listener that died silently would leave every long-poll waiting for nothing.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Sequence

import redis

from mmserver.backoff import Backoff
from mmserver.readiness import Readiness
from mmserver.shutdown import EXIT_RESTART, REDIS, WORKER, Shutdown

logger = logging.getLogger(__name__)

CONNECTION_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
HUNG_AFTER_INTERVALS = 3
# How long one get_message() may block: bounds how late a shutdown or a due PING is noticed.
POLL_S = 0.1


class CallbackFailed(Exception):
    """`on_message` or `on_connect` raised: a bug to report, never a lost connection (even when
    the callback's own error happens to be an OSError)."""


class Subscriber:
    def __init__(self, *, connect: Callable[[], redis.Redis], channels: Sequence[str],
                 on_message: Callable[[str, str], None], on_connect: Callable[[], None],
                 readiness: Readiness, shutdown: Shutdown, backoff: Backoff,
                 health_interval_s: float = 1.0,
                 on_disconnect: Callable[[], None] = lambda: None) -> None:
        """`on_disconnect`: called whenever a connection is lost or the thread ends (from
        then on messages are missed until the next `on_connect`)."""
        if not channels:
            raise ValueError("at least one channel is needed")
        if health_interval_s <= 0:
            raise ValueError(f"health_interval_s must be positive, got {health_interval_s}")
        self._connect = connect
        self._channels = list(channels)
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._readiness = readiness
        self._shutdown = shutdown
        self._backoff = backoff
        self._health_interval_s = health_interval_s
        self._thread: threading.Thread | None = None
        # Status fields: written by the subscriber thread only, read by status(); plain
        # attribute reads and writes need no lock.
        self._connected = False
        self._reconnect_attempts = 0
        self._reconnects_total = 0
        self._last_error: str | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the subscriber was already started")
        # A daemon: if it ever hangs in a socket call, it must not keep the process alive
        # (sys.exit joins non-daemon threads). The stop sequence joins it with a bound.
        self._thread = threading.Thread(target=self._run, name="subscriber", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the thread to end (after a shutdown request)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def status(self) -> dict:
        return {
            "alive": self._thread is not None and self._thread.is_alive(),
            "connected": self._connected,
            "reconnect_attempts": self._reconnect_attempts,
            "reconnects_total": self._reconnects_total,
            "last_error": self._last_error,
        }

    # --- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:
            if isinstance(exc, CallbackFailed) and exc.__cause__ is not None:
                exc = exc.__cause__
            logger.error("subscriber thread died", exc_info=exc)
            self._shutdown.request(f"subscriber thread died: {exc!r}", EXIT_RESTART, WORKER)
        finally:
            self._set_connected(False)

    def _loop(self) -> None:
        lost = False  # a connection failed or was lost: back off before the next try
        how = "lost"  # "lost" or "failed": said in the one line about the next attempt
        connected_before = False
        failures = 0  # failed reconnects since the connection was lost
        while not self._shutdown.is_set():
            if lost:
                # One line per event: what happened and what comes next. An outage so costs one
                # WARNING per reconnect attempt (and the stop's final ERROR), no traceback.
                if failures >= self._backoff.attempts:
                    logger.warning("Redis pub/sub connection %s (%s); Redis unreachable after %d "
                                   "reconnect attempts, giving up", how, self._last_error, failures)
                    self._shutdown.request("redis unreachable", EXIT_RESTART, REDIS)
                    return
                delay = self._backoff.delay(failures)
                logger.warning("Redis pub/sub connection %s (%s); reconnecting in %.2fs (attempt %d of %d)",
                               how, self._last_error, delay, failures + 1, self._backoff.attempts)
                if self._shutdown.wait(delay):
                    return
            try:
                client, pubsub = self._subscribe()
            except CONNECTION_ERRORS as exc:
                if lost:
                    failures += 1
                    self._reconnect_attempts = failures
                lost = True
                how = "failed"
                self._last_error = _describe(exc)
                continue
            if pubsub is None:  # shutdown while subscribing
                _close(client, None)
                return
            if connected_before:
                self._reconnects_total += 1
            connected_before = True
            lost = True  # from here the loop only goes round again after a loss
            failures = 0
            self._reconnect_attempts = 0
            self._set_connected(True)
            logger.info("subscribed to %s", ", ".join(self._channels))
            try:
                # Messages published while disconnected were missed: let the caller re-read.
                self._call(self._on_connect)
                self._listen(pubsub)
            except CONNECTION_ERRORS as exc:
                self._set_connected(False)
                how = "lost"
                self._last_error = _describe(exc)
            finally:
                # Closing the socket drops the subscriptions on the server side; an UNSUBSCRIBE
                # round trip would only add a wait on a server that may be hung.
                _close(client, pubsub)

    def _subscribe(self) -> tuple[redis.Redis, redis.client.PubSub | None]:
        """Connect and subscribe; return once the server confirmed every channel (so
        "connected" means messages will arrive), or (client, None) on shutdown."""
        client = self._connect()
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(*self._channels)
            if not pubsub.connection.health_check_interval:
                # Without it nothing would ever notice a hung Redis: a wiring bug, not an outage.
                raise ValueError("the subscriber's Redis client needs health_check_interval > 0 "
                                 "(use redis_client.connect_subscriber)")
            pending = set(self._channels)
            deadline = time.monotonic() + HUNG_AFTER_INTERVALS * self._health_interval_s
            while pending:
                if self._shutdown.is_set():
                    _close(None, pubsub)
                    return client, None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise redis.exceptions.TimeoutError(
                        f"no SUBSCRIBE confirmation within "
                        f"{HUNG_AFTER_INTERVALS * self._health_interval_s:.1f}s"
                    )
                message = _poll(pubsub, min(remaining, POLL_S))
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    pending.discard(_text(message["channel"]))
                elif message["type"] == "message":
                    self._deliver(message)
        except BaseException:
            _close(client, pubsub)
            raise
        return client, pubsub

    def _listen(self, pubsub: redis.client.PubSub) -> None:
        """Deliver messages until a shutdown (returns) or a lost connection (raises)."""
        hung_after = HUNG_AFTER_INTERVALS * self._health_interval_s
        ping_outstanding_since: float | None = None
        while not self._shutdown.is_set():
            message = _poll(pubsub)
            # get_message() above sent redis-py's health-check PING if one was due and read its
            # PONG if it had arrived; a count above 0 means a PONG is still owed.
            now = time.monotonic()
            if pubsub.health_check_response_counter <= 0:
                ping_outstanding_since = None
            elif ping_outstanding_since is None:
                ping_outstanding_since = now
            elif now - ping_outstanding_since > hung_after:
                raise redis.exceptions.TimeoutError(
                    f"no answer to PING for {now - ping_outstanding_since:.1f}s: Redis is hung"
                )
            if message is not None and message["type"] == "message":
                self._deliver(message)

    def _deliver(self, message: dict) -> None:
        self._call(self._on_message, _text(message["channel"]), _text(message["data"]))

    @staticmethod
    def _call(callback: Callable[..., None], *args: str) -> None:
        try:
            callback(*args)
        except Exception as exc:
            raise CallbackFailed(f"{callback!r} raised {exc!r}") from exc

    def _set_connected(self, connected: bool) -> None:
        self._connected = connected
        self._readiness.set_redis_connected(connected)
        if not connected:
            self._on_disconnect()


def _poll(pubsub: redis.client.PubSub, timeout: float = POLL_S) -> dict | None:
    """One get_message(); None when nothing complete arrived within `timeout`.

    get_message() reads with the same short timeout it waits with. When a reply arrives split
    across reads, the read can time out mid-reply: redis-py then keeps the connection open and
    its parser rewinds to the reply's start, so the rest is read on the next call. That is not a
    lost connection (a hung Redis is caught by the PING watchdog instead). A timeout that closed
    the connection (a write timeout) is one, and is raised.
    """
    try:
        return pubsub.get_message(timeout=timeout)
    except redis.exceptions.TimeoutError:
        if pubsub.connection is None or not pubsub.connection.is_connected:
            raise
        return None


def _describe(exc: BaseException) -> str:
    """`TimeoutError: Timeout reading from ...`: redis-py 8's `RedisError.__repr__` gives only
    `network:TimeoutError`, without the message."""
    return f"{type(exc).__name__}: {exc}"


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _close(client: redis.Redis | None, pubsub: redis.client.PubSub | None) -> None:
    """Close without waiting on the server; errors here only mean it is already gone."""
    for closeable in (pubsub, client):
        if closeable is None:
            continue
        try:
            closeable.close()
        except Exception:  # already broken: nothing left to release
            logger.debug("error while closing a Redis connection", exc_info=True)
