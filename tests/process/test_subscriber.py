"""The pub/sub thread against a real redis-server that is killed, restarted and frozen."""
import logging
import threading
import time

import pytest

from mmserver.backoff import Backoff
from mmserver.readiness import Readiness
from mmserver.redis_client import connect_subscriber
from mmserver.shutdown import SIGNAL, Shutdown
from mmserver.subscriber import Subscriber
from tests.redis_server import RedisServer
from tests.waiting import wait_until

CHANNELS = ["mm:events", "mm:control"]


class Harness:
    """A Subscriber wired to recording callbacks."""

    def __init__(self, server: RedisServer, backoff: Backoff, health_interval_s: float = 0.2,
                 on_message=None, socket_timeout: float = 0.5, connect=None) -> None:
        self.server = server
        self.readiness = Readiness()
        self.shutdown = Shutdown()
        self.messages: list[tuple[str, str]] = []
        self.connects = 0
        self.readiness_seen: list[bool] = []
        self._lock = threading.Lock()
        self.subscriber = Subscriber(
            connect=connect or (lambda: connect_subscriber(
                server.url, health_check_interval=health_interval_s, socket_timeout=socket_timeout)),
            channels=CHANNELS,
            on_message=on_message or self._record,
            on_connect=self._connected,
            readiness=self.readiness,
            shutdown=self.shutdown,
            backoff=backoff,
            health_interval_s=health_interval_s,
        )

    def _record(self, channel: str, data: str) -> None:
        with self._lock:
            self.messages.append((channel, data))

    def _connected(self) -> None:
        self.connects += 1

    def publish_until_received(self, channel: str, data: str, timeout: float = 5.0) -> bool:
        client = self.server.client(decode_responses=True)
        try:
            client.publish(channel, data)
            return wait_until(lambda: (channel, data) in self.messages, timeout)
        finally:
            client.close()

    def stop(self) -> None:
        self.shutdown.request("test over", 0, SIGNAL)
        assert self.subscriber.join(5), "subscriber thread did not end"


@pytest.fixture
def server(tmp_path):
    server = RedisServer(tmp_path / "redis", appendonly=False).start()
    yield server
    server.stop()


def test_published_messages_arrive_and_the_thread_is_named(server):
    harness = Harness(server, Backoff(50, 200, 3))
    harness.subscriber.start()
    try:
        assert wait_until(lambda: harness.readiness.redis_connected, 5)
        assert harness.connects == 1
        assert "subscriber" in [t.name for t in threading.enumerate()]
        assert harness.publish_until_received("mm:events", "t1,t2")
        assert harness.publish_until_received("mm:control", '{"op": "drain"}')
        status = harness.subscriber.status()
        assert status["alive"] and status["connected"]
        assert status["reconnect_attempts"] == 0 and status["reconnects_total"] == 0
    finally:
        harness.stop()
    assert not harness.subscriber.status()["alive"]
    assert harness.readiness.redis_connected is False
    assert harness.shutdown.reason == "test over"


def test_redis_restarted_within_the_budget_reconnects(server):
    harness = Harness(server, Backoff(100, 400, 10))
    harness.subscriber.start()
    try:
        assert wait_until(lambda: harness.readiness.redis_connected, 5)
        server.kill()
        assert wait_until(lambda: not harness.readiness.redis_connected, 5)
        # Let at least one reconnect fail while Redis is down.
        assert wait_until(lambda: harness.subscriber.status()["reconnect_attempts"] >= 1, 5)
        assert harness.subscriber.status()["last_error"]
        server.start()
        assert wait_until(lambda: harness.readiness.redis_connected, 5)
        status = harness.subscriber.status()
        assert status["reconnect_attempts"] == 0
        assert status["reconnects_total"] == 1
        assert harness.connects == 2  # on_connect again: waiters must re-read what was missed
        assert not harness.shutdown.is_set()
        assert harness.publish_until_received("mm:events", "after-restart")
    finally:
        harness.stop()


def test_redis_gone_for_good_requests_shutdown_with_status_1(server):
    harness = Harness(server, Backoff(50, 200, 3))
    harness.subscriber.start()
    assert wait_until(lambda: harness.readiness.redis_connected, 5)
    server.kill()
    # 0.05 + 0.1 + 0.2 s of waits plus three refused connects.
    assert harness.shutdown.wait(5), "no shutdown requested"
    assert harness.shutdown.reason == "redis unreachable"
    assert harness.shutdown.exit_status == 1
    assert harness.subscriber.join(2)
    assert harness.readiness.redis_connected is False
    assert harness.subscriber.status()["reconnect_attempts"] == 3


def test_zero_attempts_gives_up_at_once_when_redis_never_answers(tmp_path):
    never_started = RedisServer(tmp_path / "none")  # a free port nobody listens on
    harness = Harness(never_started, Backoff(1000, 60000, 0))
    started = time.monotonic()
    harness.subscriber.start()
    assert harness.shutdown.wait(3)
    assert time.monotonic() - started < 2
    assert harness.shutdown.reason == "redis unreachable"
    assert harness.connects == 0
    assert harness.subscriber.join(2)


def test_frozen_redis_is_detected_and_resumed_redis_reconnects(server):
    harness = Harness(server, Backoff(100, 500, 30), health_interval_s=0.2)
    harness.subscriber.start()
    try:
        assert wait_until(lambda: harness.readiness.redis_connected, 5)
        server.freeze()
        frozen_at = time.monotonic()
        try:
            assert wait_until(lambda: not harness.readiness.redis_connected, 5), "hang not detected"
            assert time.monotonic() - frozen_at < 3
            assert "hung" in (harness.subscriber.status()["last_error"] or "") or \
                "Timeout" in (harness.subscriber.status()["last_error"] or "")
        finally:
            server.resume()
        assert wait_until(lambda: harness.readiness.redis_connected, 10)
        assert harness.connects == 2
        assert not harness.shutdown.is_set()
        assert harness.publish_until_received("mm:events", "after-freeze")
    finally:
        harness.stop()


def test_shutdown_during_backoff_wait_ends_the_thread_promptly(server):
    harness = Harness(server, Backoff(30_000, 60_000, 5))
    harness.subscriber.start()
    assert wait_until(lambda: harness.readiness.redis_connected, 5)
    server.kill()
    assert wait_until(lambda: not harness.readiness.redis_connected, 5)
    time.sleep(0.2)  # now inside the 30 s backoff wait
    asked = time.monotonic()
    harness.shutdown.request("SIGTERM", 0, SIGNAL)
    assert harness.subscriber.join(2)
    assert time.monotonic() - asked < 1.0
    assert harness.shutdown.reason == "SIGTERM"  # the subscriber did not overwrite it


def test_shutdown_while_connected_closes_promptly(server):
    harness = Harness(server, Backoff(50, 200, 3))
    harness.subscriber.start()
    assert wait_until(lambda: harness.readiness.redis_connected, 5)
    asked = time.monotonic()
    harness.shutdown.request("SIGTERM", 0, SIGNAL)
    assert harness.subscriber.join(2)
    assert time.monotonic() - asked < 1.0
    # The server no longer counts our subscription.
    client = server.client(decode_responses=True)
    assert wait_until(lambda: client.pubsub_numsub("mm:events") == [("mm:events", 0)], 2)
    client.close()


def test_on_message_raising_stops_the_replica_with_a_logged_traceback(server, caplog):
    def explode(channel, data):
        raise OSError("handler bug")  # an OSError from a callback is a bug, not a lost link

    harness = Harness(server, Backoff(50, 200, 3), on_message=explode)
    with caplog.at_level(logging.ERROR, logger="mmserver.subscriber"):
        harness.subscriber.start()
        assert wait_until(lambda: harness.readiness.redis_connected, 5)
        client = server.client()
        client.publish("mm:events", "t1")
        client.close()
        assert harness.shutdown.wait(5)
        assert harness.subscriber.join(2)
    assert harness.shutdown.reason == "subscriber thread died: OSError('handler bug')"
    assert harness.shutdown.exit_status == 1
    assert any(r.exc_info and "handler bug" in str(r.exc_info[1]) for r in caplog.records)
    assert harness.readiness.redis_connected is False


# What mmserver/replica.py passes in production.
PRODUCTION = {"health_interval_s": 1.0, "socket_timeout": 3.0}


def test_production_settings_keep_one_connection_to_a_healthy_idle_redis(server):
    # With redis-py 8 (RESP3 by default) the thread's own PINGs were answered with plain replies
    # it never recognised: every connection was declared hung ~4 s after it was made.
    harness = Harness(server, Backoff(100, 400, 10), **PRODUCTION)
    harness.subscriber.start()
    try:
        assert wait_until(lambda: harness.readiness.redis_connected, 5)
        seen_connected = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:  # idle: only health-check PINGs on the wire
            seen_connected.append(harness.subscriber.status()["connected"])
            time.sleep(0.05)
        status = harness.subscriber.status()
        assert all(seen_connected), "the connection dropped while Redis was healthy"
        assert status["reconnects_total"] == 0 and status["last_error"] is None
        assert harness.connects == 1
        # Health checks really ran (and were answered) on this connection.
        client = server.client(decode_responses=True)
        try:
            assert int(client.info("commandstats")["cmdstat_ping"]["calls"]) >= 5
        finally:
            client.close()
        assert harness.publish_until_received("mm:events", "after-idle")
        assert harness.subscriber.status()["reconnects_total"] == 0
    finally:
        harness.stop()


def test_production_settings_detect_a_frozen_redis_within_a_few_seconds(server):
    harness = Harness(server, Backoff(100, 500, 30), **PRODUCTION)
    harness.subscriber.start()
    try:
        assert wait_until(lambda: harness.readiness.redis_connected, 5)
        server.freeze()
        frozen_at = time.monotonic()
        try:
            # At most one health_check_interval until the PING, then 3 intervals unanswered.
            assert wait_until(lambda: not harness.readiness.redis_connected, 6), "hang not detected"
            assert time.monotonic() - frozen_at < 5.5
            last_error = harness.subscriber.status()["last_error"] or ""
            assert last_error.startswith("TimeoutError: no answer to PING") and "hung" in last_error
        finally:
            server.resume()
        assert wait_until(lambda: harness.readiness.redis_connected, 10)
        assert harness.subscriber.status()["reconnects_total"] == 1
        assert harness.publish_until_received("mm:events", "after-freeze")
    finally:
        harness.stop()


def test_a_client_without_health_checks_is_a_wiring_error_not_an_outage(server):
    # Without health_check_interval nothing would notice a hung Redis: refuse loudly.
    harness = Harness(server, Backoff(50, 200, 3),
                      connect=lambda: server.client(decode_responses=True))
    harness.subscriber.start()
    assert harness.shutdown.wait(5)
    assert harness.subscriber.join(2)
    assert harness.shutdown.exit_status == 1
    assert "health_check_interval" in harness.shutdown.reason
    assert harness.connects == 0
