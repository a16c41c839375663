"""No reply left unread on a connection ever reaches the next caller, on any command path.

A call interrupted between sending its command and reading the reply (an asynchronous exception
such as KeyboardInterrupt or SystemExit from a signal handler) leaves the reply on the socket.
redis-py 8's pools do not look for it at checkout under its defaults (RESP3, maintenance
notifications "auto"), and the lean pool skips its look on connections used in the last 0.1 s:
the next command on that connection would read the earlier reply as its own. `connect`'s clients
count the replies each connection owes and drop a connection released with replies still owed
(redis_replies.ReplyGuard). On a real redis-server, for a script call, plain commands, and
pipelines with and without MULTI/EXEC, interrupted before the first reply or halfway through.
"""
from __future__ import annotations

import sys

import pytest
import redis

from mmserver.redis_client import connect
from mmserver.store.scripts import Scripts


class _Interrupted(BaseException):
    """Stands for an asynchronous exception arriving between a send and its read."""


class _InterruptRead:
    """While active, raise _Interrupted as redis-py's Connection.read_response is entered for
    the `nth` time (1-based) in this thread, before its body runs: the command is on the wire,
    its reply (and the ones after it) unread."""

    target = redis.connection.AbstractConnection.read_response.__code__

    def __init__(self, nth: int = 1) -> None:
        self.nth = nth
        self.seen = 0

    def _trace(self, frame, event, arg):
        if event == "call" and frame.f_code is self.target:
            self.seen += 1
            if self.seen == self.nth:
                sys.settrace(None)
                raise _Interrupted()
        return None

    def __enter__(self) -> "_InterruptRead":
        sys.settrace(self._trace)
        return self

    def __exit__(self, *exc) -> bool:
        sys.settrace(None)
        return False


@pytest.fixture(params=["lean", "plain"])
def client(request, redis_server, redis_client):
    redis_client.flushdb()
    redis_client.mset({"k:first": "first", "k:second": "second", "k:third": "third"})
    redis_client.sadd("s:first", "a")
    redis_client.sadd("s:second", "b")
    # max_connections=1: the next caller is certain to get the interrupted call's connection.
    client = connect(redis_server.url, lean=request.param == "lean", max_connections=1)
    # Connected first: the connection's handshake (HELLO) is not the reply to interrupt.
    assert client.ping()
    yield client
    client.close()


def _interrupted(call, nth: int = 1) -> None:
    with _InterruptRead(nth):
        with pytest.raises(_Interrupted):
            call()


def test_a_plain_command_interrupted_before_its_reply(client):
    _interrupted(lambda: client.get("k:first"))
    assert client.get("k:second") == "second"
    assert client.get("k:third") == "third"


def test_other_plain_commands_interrupted_before_their_reply(client):
    _interrupted(lambda: client.smembers("s:first"))
    assert client.smembers("s:second") == {"b"}
    _interrupted(lambda: client.set("k:lock", "x", nx=True, px=10_000))
    assert client.get("k:first") == "first"
    _interrupted(client.time)
    assert client.get("k:second") == "second"


def test_a_script_call_interrupted_before_its_reply(client):
    scripts = Scripts(client)
    scripts._sources["replica_list"] = "return redis.call('GET', ARGV[1])"
    scripts._sha("replica_list")
    _interrupted(lambda: scripts.call("replica_list", ["k:first"]))
    assert scripts.call("replica_list", ["k:second"]) == "second"
    assert client.get("k:third") == "third"


@pytest.mark.parametrize("transaction", [False, True], ids=["pipeline", "multi-exec"])
@pytest.mark.parametrize("nth", [1, 2], ids=["before-first-reply", "after-first-reply"])
def test_a_pipeline_interrupted_before_or_between_its_replies(client, transaction, nth):
    def run():
        pipe = client.pipeline(transaction=transaction)
        pipe.get("k:first")
        pipe.get("k:second")
        pipe.get("k:third")
        return pipe.execute()

    _interrupted(run, nth)
    assert client.get("k:third") == "third"
    pipe = client.pipeline(transaction=transaction)
    pipe.get("k:second").get("k:first")
    assert pipe.execute() == ["second", "first"]


def test_a_connection_that_owes_nothing_is_kept(client):
    assert client.get("k:first") == "first"
    connection = client.connection_pool.get_connection()
    try:
        sock = connection._sock
        assert sock is not None
    finally:
        client.connection_pool.release(connection)
    pipe = client.pipeline(transaction=True)
    pipe.get("k:first").get("k:second")
    assert pipe.execute() == ["first", "second"]
    with pytest.raises(redis.ResponseError):
        client.execute_command("NOSUCHCOMMAND")
    connection = client.connection_pool.get_connection()
    try:
        assert connection._sock is sock  # an error reply is a whole reply: nothing owed
        assert connection.replies_owed == 0
    finally:
        client.connection_pool.release(connection)
