"""The replica-local view cache (store/viewcache.py) on a real Redis with the real subscriber
thread: what it answers, what it checks, and when it must not answer.

A "replica" here is a Store with a cache, fed by a Subscriber wired as replica.py wires it; a
second Store without a cache plays another replica making changes. Nothing waits a fixed
time: each test waits for the condition it needs (the subscriber connected, a message seen).
"""
from __future__ import annotations

import threading
import time

import pytest

from mmserver.backoff import Backoff
from mmserver.config import ModeConfig, ServersConfig
from mmserver.readiness import Readiness
from mmserver.redis_client import connect, connect_subscriber
from mmserver.shutdown import SIGNAL, Shutdown
from mmserver.store import Forbidden, NotFound, Store, keys, sessions
from mmserver.store.tickets import BACKEND_ACCESS, player_access, token_hash
from mmserver.store.viewcache import FORBIDDEN, MISS, ViewCache
from mmserver.subscriber import Subscriber
from tests.waiting import wait_until

MODES = {"duel": ModeConfig("duel", accept_timeout_s=30, ticket_ttl_s=60)}


class Replica:
    """A store with a view cache and the subscriber that keeps it, as replica.py wires them."""

    def __init__(self, url: str, *, backoff_ms: int = 50, max_age_s: float = 30.0, clock=None) -> None:
        self.cache = ViewCache(1000, max_age_s, **({"clock": clock} if clock else {}))
        self.client = connect(url)
        self.store = Store(self.client, MODES, ServersConfig(static=("10.0.0.1:7777",)), view_cache=self.cache)
        self.connects = 0
        self.messages: list[tuple[str, str]] = []
        self._shutdown = Shutdown()

        def on_message(channel: str, data: str) -> None:
            self.cache.on_message(data)
            self.messages.append((channel, data))

        def on_connect() -> None:
            self.cache.connected()
            self.connects += 1

        self.subscriber = Subscriber(
            connect=lambda: connect_subscriber(url, health_check_interval=1.0),
            channels=[keys.EVENTS_CHANNEL, keys.VIEWS_CHANNEL], on_message=on_message,
            on_connect=on_connect, on_disconnect=self.cache.disconnected, readiness=Readiness(),
            shutdown=self._shutdown, backoff=Backoff(backoff_ms, backoff_ms, 50))
        self.subscriber.start()
        assert wait_until(lambda: self.cache.live)

    def saw(self, ticket_id: str) -> bool:
        return any(ticket_id in data.split(",") for _, data in self.messages)

    def close(self) -> None:
        self._shutdown.request("test over", 0, SIGNAL)
        self.subscriber.join(5)
        self.client.close()


@pytest.fixture
def replica(redis_server, redis_client):
    r = Replica(redis_server.url)
    yield r
    r.close()


@pytest.fixture
def other(redis_client):
    """Another replica, without a cache: its changes reach the first only through pub/sub."""
    return Store(redis_client, MODES, ServersConfig(static=("10.0.0.1:7777",)))


def script_calls(client) -> int:
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def create(store, player="alice", mmr=1500):
    view, token = store.create_ticket(player_id=player, mode="duel", mmr=mmr, region=None, party=[])
    return view["ticket_id"], token


def test_a_poll_of_an_unchanged_ticket_costs_no_redis_call_and_owes_a_refresh(replica, redis_client):
    ticket_id, token = create(replica.store)
    # The creation's own message arrives and must not evict the view it answered.
    assert wait_until(lambda: replica.saw(ticket_id))
    before = script_calls(redis_client)
    views = [replica.store.read_ticket(ticket_id, token) for _ in range(5)]
    assert script_calls(redis_client) == before
    assert {v["status"] for v in views} == {"queued"} and views[0]["ticket_id"] == ticket_id
    assert views[0] == {**replica.store.read_ticket(ticket_id, access=BACKEND_ACCESS),
                        "matching": views[0]["matching"]}
    assert replica.store.refresh_reads() == 1  # five reads, one ticket: one refresh
    assert replica.store.refresh_reads() == 0


def test_the_token_is_checked_on_every_read_served_from_the_cache(replica, redis_client):
    alice, alice_token = create(replica.store, "alice")
    bob, bob_token = create(replica.store, "bob")
    assert wait_until(lambda: replica.saw(alice) and replica.saw(bob))
    before = script_calls(redis_client)
    with pytest.raises(Forbidden):
        replica.store.read_ticket(alice, bob_token)  # another ticket's token
    with pytest.raises(Forbidden):
        replica.store.read_ticket(alice, "not-a-token")
    with pytest.raises(Forbidden):
        replica.store.read_ticket(alice, access=player_access("bob"))
    assert replica.store.read_ticket(alice, access=player_access("alice"))["player_id"] == "alice"
    assert replica.store.read_ticket(alice, access=BACKEND_ACCESS)["player_id"] == "alice"
    assert replica.store.read_ticket(bob, bob_token)["player_id"] == "bob"
    assert script_calls(redis_client) == before  # every answer above came from the cache
    with pytest.raises(NotFound):
        replica.store.read_ticket("AAAAAAAAAAAAAAAA", alice_token)


def test_a_token_the_cache_cannot_check_goes_to_redis(replica, other, redis_client):
    ticket_id, token = create(other)  # created elsewhere: this replica never saw the token
    assert wait_until(lambda: replica.saw(ticket_id))  # (that message would evict the view)
    replica.store.read_ticket(ticket_id, access=BACKEND_ACCESS)  # fills the cache, token unknown
    assert replica.cache.get(ticket_id, BACKEND_ACCESS) is not MISS
    before = script_calls(redis_client)
    assert replica.store.read_ticket(ticket_id, token)["ticket_id"] == ticket_id
    assert script_calls(redis_client) == before + 1  # checked by the read script
    with pytest.raises(Forbidden):
        replica.store.read_ticket(ticket_id, "wrong")  # now the entry knows the hash
    assert script_calls(redis_client) == before + 1


def test_a_change_on_another_replica_evicts_the_view_and_terminal_states_are_never_missed(replica, other):
    ticket_id, token = create(replica.store)
    assert replica.store.read_ticket(ticket_id, token)["status"] == "queued"
    other.cancel_ticket(ticket_id, token)
    # Stale by at most the propagation of that one message: once it arrived, never again.
    assert wait_until(lambda: replica.cache.get(ticket_id, BACKEND_ACCESS) is MISS)
    view = replica.store.read_ticket(ticket_id, token)
    assert view["status"] == "cancelled"
    assert [replica.store.read_ticket(ticket_id, token)["status"] for _ in range(3)] == ["cancelled"] * 3


def test_a_change_that_keeps_the_version_evicts_too(replica, redis_client):
    """A tick's explanation (matching.blocked_by) is written without a new version: why.lua
    names the ticket on mm:views."""
    ticket_id, token = create(replica.store)
    assert replica.store.read_ticket(ticket_id, token)["matching"]["blocked_by"] is None
    replica.store.record_blocked("duel", None, {ticket_id: "players"})
    assert wait_until(lambda: (keys.VIEWS_CHANNEL, ticket_id) in replica.messages)
    assert replica.store.read_ticket(ticket_id, token)["matching"]["blocked_by"] == "players"


def test_a_fill_that_raced_a_change_is_not_stored():
    """A read answered before a change, whose message arrives before the answer is stored, must
    not put the old view in the cache (it would stay there until the next change)."""
    cache = ViewCache(10, 30.0)
    cache.connected()
    reply = ["ok", "id", "t1", "s", "queued", "v", "1", "p", "alice"]
    fill = cache.begin("t1")
    cache.invalidate(["t1"])  # the change's message, while the read was in flight
    cache.put(fill, reply, "hash")
    assert cache.get("t1", "hash") is MISS
    # A message about another ticket changes nothing for this one.
    fill = cache.begin("t1")
    cache.invalidate(["t2"])
    cache.put(fill, reply, "hash")
    assert cache.get("t1", "hash") == reply
    # The creation's own message is expected once, and only once.
    created = ["ok", "id", "t3", "s", "queued", "v", "1", "p", "bob"]
    fill = cache.begin("t3")
    cache.put(fill, created, "h3", own_messages=1)
    cache.invalidate(["t3"])  # its own publish: kept
    assert cache.get("t3", "h3") == created
    cache.invalidate(["t3"])  # the next change: evicted
    assert cache.get("t3", "h3") is MISS
    # The creation's own message arrived before the answer was stored: the next one evicts.
    fill = cache.begin("t3")
    cache.invalidate(["t3"])
    cache.put(fill, created, "h3", own_messages=1)
    assert cache.get("t3", "h3") == created
    cache.invalidate(["t3"])
    assert cache.get("t3", "h3") is MISS
    # This replica's own change voids a read in flight as its message would, and drops the
    # entry, whatever creation message it still expected.
    fill = cache.begin("t1")
    cache.drop("t1")
    cache.put(fill, reply, "hash")
    assert cache.get("t1", "hash") is MISS
    fill = cache.begin("t3")
    cache.put(fill, created, "h3", own_messages=1)
    cache.drop("t3")
    assert cache.get("t3", "h3") is MISS


def test_a_disconnected_subscriber_turns_the_cache_off_and_a_reconnect_starts_it_empty(
        redis_server, redis_client, other):
    replica = Replica(redis_server.url, backoff_ms=1000)  # a reconnect slow enough to act meanwhile
    try:
        ticket_id, token = create(replica.store)
        assert wait_until(lambda: replica.saw(ticket_id))
        connects = replica.connects
        redis_client.client_kill_filter(_type="pubsub")
        assert wait_until(lambda: not replica.cache.live)
        # Changed while this replica hears nothing: that message is lost.
        other.cancel_ticket(ticket_id, token)
        assert replica.cache.get(ticket_id, token_hash(token)) is MISS
        assert replica.store.read_ticket(ticket_id, token)["status"] == "cancelled"
        assert len(replica.cache) == 0  # nothing is stored while messages may be missed
        assert wait_until(lambda: replica.connects > connects and replica.cache.live)
        assert replica.store.read_ticket(ticket_id, token)["status"] == "cancelled"
    finally:
        replica.close()


def test_a_reconnect_empties_the_cache(replica):
    cache = replica.cache
    cache.connected()
    fill = cache.begin("t1")
    cache.put(fill, ["ok", "id", "t1", "s", "queued", "v", "1", "p", "a"], "h")
    in_flight = cache.begin("t2")
    cache.connected()  # what the subscriber calls after every re-subscription
    assert cache.get("t1", "h") is MISS
    cache.put(in_flight, ["ok", "id", "t2", "s", "queued", "v", "1", "p", "b"], "h")
    assert cache.get("t2", "h") is MISS  # read before the reconnect: void


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_not_served_past_its_age_and_memory_is_bounded():
    clock = Clock()
    cache = ViewCache(3, 10.0, clock=clock)
    cache.connected()
    for i in range(5):
        cache.put(cache.begin(f"t{i}"), ["ok", "id", f"t{i}", "s", "queued", "v", "1", "p", f"p{i}"], "h")
    assert len(cache) == 3
    assert cache.get("t0", "h") is MISS and cache.get("t1", "h") is MISS  # least recently used
    assert cache.get("t2", "h") is not MISS
    clock.now += 10.5
    assert cache.get("t2", "h") is MISS and cache.get("t4", "h") is MISS


def test_a_party_member_who_left_its_match_is_refused_as_redis_refuses_it():
    """As lib/views.lua authorised(): a player token reads its party's ticket only while the
    player is still in the match (a ticket's 'lf' names those who left)."""
    cache = ViewCache(10, 10.0)
    cache.connected()
    reply = ["ok", "id", "t1", "s", "assigned", "v", "4", "p", "ann", "y", "amy,bob", "lf", "amy"]
    cache.put(cache.begin("t1"), reply, BACKEND_ACCESS)
    assert cache.get("t1", player_access("ann")) == reply
    assert cache.get("t1", player_access("bob")) == reply
    assert cache.get("t1", player_access("amy")) == FORBIDDEN


def test_reads_from_the_cache_keep_the_ticket_alive_through_the_batched_refresh(replica, redis_client):
    ticket_id, token = create(replica.store)
    assert wait_until(lambda: replica.saw(ticket_id))
    queue = keys.queue("duel", None)
    member = next(m for m in redis_client.zrange(queue, 0, -1) if m.startswith(ticket_id + "|"))
    created_deadline = redis_client.zscore(queue, member)
    time.sleep(0.01)  # Redis's clock (the host's) moves on: DEBUG SLEEP is off by default from Redis 7
    replica.store.read_ticket(ticket_id, token)  # answered from the cache: no write yet
    assert redis_client.zscore(queue, member) == created_deadline
    assert replica.store.refresh_reads() == 1  # the tick's refresh
    assert redis_client.zscore(queue, member) > created_deadline


def test_the_tick_refreshes_before_it_expires(replica, redis_client):
    """A ticket read (from the cache) since the last tick is not expired by that tick, even
    when its deadline passed meanwhile."""
    from mmserver.ticker import Ticker

    ticket_id, token = create(replica.store)
    assert wait_until(lambda: replica.saw(ticket_id))
    queue = keys.queue("duel", None)
    member = next(m for m in redis_client.zrange(queue, 0, -1) if m.startswith(ticket_id + "|"))
    replica.store.read_ticket(ticket_id, token)
    redis_client.zadd(queue, {member: 1})  # as if its deadline had passed before the tick
    Ticker(replica.store, MODES, shutdown=Shutdown()).tick()
    # Looked at in Redis itself: a read through the store would be a read (and owe a refresh).
    assert redis_client.hexists(keys.queued_tickets(ticket_id), ticket_id)
    redis_client.zadd(queue, {member: 1})  # not read since: the next tick expires it
    Ticker(replica.store, MODES, shutdown=Shutdown()).tick()
    assert keys.unpack_ticket(redis_client.get(keys.ticket(ticket_id)))["s"] == "expired"
    assert wait_until(lambda: replica.cache.get(ticket_id, BACKEND_ACCESS) is MISS)
    assert replica.store.read_ticket(ticket_id, token)["status"] == "expired"


def test_many_threads_reading_while_another_replica_changes_never_see_an_old_state_after_the_new(
        replica, other):
    """Each reader's answers for a ticket never go back once a newer version was seen, and
    every reader sees the final (terminal) state once its message arrived."""
    tickets = [create(replica.store, f"p{i}", mmr=1000 + 500 * i) for i in range(6)]
    stop = threading.Event()
    regressions: list[str] = []

    def reader() -> None:
        seen = {}
        while not stop.is_set():
            for ticket_id, token in tickets:
                version = replica.store.read_ticket(ticket_id, token)["version"]
                if version < seen.get(ticket_id, 0):
                    regressions.append(ticket_id)
                seen[ticket_id] = version

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for ticket_id, token in tickets:
            other.cancel_ticket(ticket_id, token)
        for ticket_id, token in tickets:
            assert wait_until(lambda: replica.store.read_ticket(ticket_id, token)["status"] == "cancelled")
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert regressions == []


def _two_sharing_a_bucket_and_one_not(store):
    seen = {}
    while True:
        ticket = create(store, f"p{len(seen)}", mmr=1000 + 400 * len(seen))
        bucket = keys.why_bucket(ticket[0])
        if bucket in seen:
            return seen[bucket], ticket, next(v for k, v in seen.items() if k != bucket)
        seen[bucket] = ticket


def test_a_view_cached_between_two_parts_of_a_write_learns_its_explanation(replica, other, monkeypatch):
    """A ticket is named in the call that writes its bucket: a view read and cached after an
    earlier call named it would otherwise keep the old explanation."""
    monkeypatch.setattr(sessions, "WHY_CHUNK", 2)
    (a1, _), (a2, _), (b, tb) = _two_sharing_a_bucket_and_one_not(replica.store)
    assert wait_until(lambda: replica.saw(b))
    scripts = replica.store._sessions._scripts
    call = scripts.call
    calls = []

    def between(name, args):
        answer = call(name, args)
        if name == "why":
            calls.append(args)
            if len(calls) == 1:
                assert wait_until(lambda: sum(c == keys.VIEWS_CHANNEL for c, _ in replica.messages) >= 1)
                replica.store.read_ticket(b, tb)  # a poll between the two parts: cached
        return answer

    monkeypatch.setattr(scripts, "call", between)
    replica.store.record_blocked("duel", None, {a1: "mmr", b: "players", a2: "mmr"})
    monkeypatch.setattr(scripts, "call", call)
    assert len(calls) == 2
    assert wait_until(lambda: sum(c == keys.VIEWS_CHANNEL for c, _ in replica.messages) >= 2)
    assert other.read_ticket(b, tb)["matching"]["blocked_by"] == "players"  # Redis, around the cache
    assert replica.store.read_ticket(b, tb)["matching"]["blocked_by"] == "players"


def test_a_change_made_through_this_replica_is_read_here_before_its_message_comes_back(redis_server):
    # No subscriber here: the changes' messages never arrive, so only the replica's own
    # change can evict the views it holds (a client answered "cancelled" must read it).
    cache = ViewCache(1000, 30.0)
    cache.connected()
    client = connect(redis_server.url)
    client.flushall()
    store = Store(client, MODES, ServersConfig(static=("10.0.0.1:7777",)), view_cache=cache)
    try:
        def cached_then(ticket_id, token, change):
            store.read_ticket(ticket_id, token)
            assert cache.get(ticket_id, BACKEND_ACCESS) is not MISS  # read from the cache now
            answered = change()
            return answered, store.read_ticket(ticket_id, token)

        cancelled, token = create(store, "carol")
        answer, view = cached_then(cancelled, token, lambda: store.cancel_ticket(cancelled, token))
        assert answer["status"] == view["status"] == "cancelled"

        first, first_token = create(store, "alice", 1500)
        second, second_token = create(store, "bob", 1510)
        [claimed] = store.claim("duel", None, [[[first], [second]]], 10.0)
        assert claimed.session_id
        answer, view = cached_then(first, first_token, lambda: store.accept(first, first_token))
        assert answer["session"]["accepted"] is True and view["session"]["accepted"] is True
        answer, view = cached_then(second, second_token, lambda: store.decline(second, second_token))
        assert answer["status"] == view["status"] == "cancelled"

        requeued, requeued_token = create(store, "dave")
        _answer, view = cached_then(requeued, requeued_token, lambda: store.release_player("dave"))
        assert view["status"] == "cancelled"
    finally:
        client.close()
