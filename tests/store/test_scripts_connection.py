"""Scripts call EVALSHA straight through a pooled connection (scripts.py). A connection goes
back to the pool only once its reply has been read: with redis-py 8's defaults (RESP3,
maintenance notifications "auto") neither redis-py's pool nor mmserver's lean pool looks for
unread data at checkout, so the next caller would read the previous call's reply."""
from __future__ import annotations

import sys
import threading
import time

import pytest
import redis

from mmserver.redis_client import connect
from mmserver.store.scripts import Scripts


class _Interrupted(BaseException):
    """Stands for an asynchronous exception (KeyboardInterrupt, SystemExit from a signal
    handler) arriving between sending a command and reading its reply."""


def _interrupt_next_reply_read():
    """Raise _Interrupted as the next Connection.read_response is entered, before its body
    runs: the command is on the wire, its reply unread."""
    target = redis.connection.Connection.read_response.__code__

    def trace(frame, event, arg):
        if event == "call" and frame.f_code is target:
            sys.settrace(None)
            raise _Interrupted()
        return None

    sys.settrace(trace)


@pytest.fixture
def client(redis_server):
    """The service's own client (mmserver.redis_client.connect) on the test's Redis."""
    client = connect(redis_server.url)
    yield client
    client.close()


def with_script(client: redis.Redis, source: str) -> Scripts:
    """Scripts on `client` whose script replica_list runs `source` instead."""
    scripts = Scripts(client)
    scripts._sources["replica_list"] = source
    return scripts


def test_a_call_interrupted_before_its_reply_leaves_no_reply_for_the_next_caller(client, redis_client):
    redis_client.set("k:first", "first")
    redis_client.set("k:second", "second")
    scripts = with_script(client, "return redis.call('GET', ARGV[1])")
    scripts._sha("replica_list")
    assert scripts._pool is not None  # the direct path is the one under test
    _interrupt_next_reply_read()
    try:
        with pytest.raises(_Interrupted):
            scripts.call("replica_list", ["k:first"])
    finally:
        sys.settrace(None)
    # At once (well within the pool's idle check interval), on the same pooled connection.
    assert scripts.call("replica_list", ["k:second"]) == "second"
    assert scripts.call("replica_list", ["k:first"]) == "first"


def test_an_error_reply_keeps_the_connection(client, redis_client):
    scripts = with_script(client, "return redis.error_reply('ERR nope ' .. ARGV[1])")
    scripts._sha("replica_list")
    with pytest.raises(redis.ResponseError, match="nope 1"):
        scripts.call("replica_list", ["1"])
    connection = client.connection_pool.get_connection()
    try:
        # The whole error reply was read: the connection is still the same open socket.
        assert connection._sock is not None
    finally:
        client.connection_pool.release(connection)
    with pytest.raises(redis.ResponseError, match="nope 2"):
        scripts.call("replica_list", ["2"])


def test_replies_never_cross_when_calls_time_out_on_a_busy_or_frozen_server(tmp_path):
    # Calls that time out mid-reply (a long script from another client holds Redis past the
    # socket timeout; a frozen server) leave replies on their sockets: none may reach a
    # later call.
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path / "redis", appendonly=False).start()
    client = connect(server.url, socket_timeout=0.2)
    admin = server.client()
    stop = threading.Event()
    crossed, answered, failed = [], [0], [0]

    def work(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            arg = f"{worker}:{n}"
            try:
                reply = scripts.call("replica_list", [arg])
            except redis.ConnectionError:
                failed[0] += 1
                continue
            answered[0] += 1
            if reply != arg:
                crossed.append((arg, reply))

    try:
        scripts = with_script(client, "return ARGV[1]")
        threads = [threading.Thread(target=work, args=(i,), name=f"caller-{i}") for i in range(4)]
        for thread in threads:
            thread.start()
        busy = ("local function us() local t = redis.call('TIME') return t[1] * 1e6 + t[2] end "
                "local s = us() while us() - s < 300000 do end return 1")
        for _ in range(2):
            time.sleep(0.1)
            admin.eval(busy, 0)
            time.sleep(0.1)
            server.freeze()
            time.sleep(0.3)
            server.resume()
        time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join(10)
        assert failed[0] > 0  # the timeouts did happen
        assert answered[0] > 0
        assert crossed == []
        assert scripts.call("replica_list", ["last"]) == "last"
    finally:
        stop.set()
        server.resume()
        admin.close()
        client.close()
        server.stop()


def test_calls_in_flight_answer_in_the_order_sent_each_on_a_connection_of_its_own(client, redis_client):
    scripts = with_script(client, "return ARGV[1]")
    calls = scripts.calls("replica_list", 2)
    calls.send(["a"])
    calls.send(["b"])
    assert calls.in_flight == 2
    assert len({id(connection) for connection, _ in calls._waiting}) == 2
    with pytest.raises(RuntimeError, match="2 calls in flight"):
        calls.send(["c"])
    assert [calls.receive(), calls.receive()] == ["a", "b"]
    calls.send(["c"])  # on a connection that owes nothing any more
    assert calls.receive() == "c" and calls.in_flight == 0
    calls.close()
    assert scripts.call("replica_list", ["d"]) == "d"


def test_calls_sent_after_a_script_flush_are_made_again_once_each(client, redis_client):
    scripts = with_script(client, "return redis.call('INCR', ARGV[1])")
    calls = scripts.calls("replica_list", 2)
    calls.send(["k:count"])
    assert calls.receive() == 1
    redis_client.script_flush()  # as after a Redis restart: the cached SHA is unknown
    calls.send(["k:count"])
    calls.send(["k:count"])
    assert [calls.receive(), calls.receive()] == [2, 3]  # each NOSCRIPT made again, once
    assert redis_client.get("k:count") == "3"
    calls.close()


def test_calls_closed_with_replies_unread_leave_none_for_the_next_caller(redis_server, redis_client):
    # The service's client and redis-py's own (no stale-reply guard in its pool, and retries):
    # Calls closes a connection owed a reply itself before giving it back.
    redis_client.set("k:first", "first")
    redis_client.set("k:second", "second")
    for client in (connect(redis_server.url), redis.Redis.from_url(redis_server.url, decode_responses=True)):
        try:
            scripts = with_script(client, "return redis.call('GET', ARGV[1])")
            calls = scripts.calls("replica_list", 2)
            calls.send(["k:first"])
            calls.send(["k:first"])
            calls.close()  # both replies owed: both connections closed, not reused as they are
            for _ in range(3):
                assert scripts.call("replica_list", ["k:second"]) == "second"
                assert client.get("k:second") == "second"
        finally:
            client.close()


def test_calls_after_redis_restarted_between_them_go_through(tmp_path):
    # The caller works between two calls (the matcher); Redis restarts meanwhile. The next call
    # takes a connection the pool checks (reconnected), meets NOSCRIPT and is made again.
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path, appendonly=False).start()
    client = connect(server.url)
    try:
        scripts = with_script(client, "return ARGV[1]")
        calls = scripts.calls("replica_list", 2)
        calls.send(["a"])
        assert calls.receive() == "a"
        server.stop()
        server.start()
        time.sleep(0.2)  # past the pool's idle check interval
        calls.send(["b"])
        assert calls.receive() == "b"
        calls.close()
    finally:
        client.close()
        server.stop()
