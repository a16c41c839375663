"""The server pool stays true: one address is one server, regions, deregistration, retention,
reconciliation with the static list, and max_match_s, against the real redis-server."""
import time

import pytest

from mmserver.config import ModeConfig, ServersConfig
from mmserver.store import Conflict, NotFound, Store
from mmserver.store import keys
from tests.store.conftest import new_ticket
from tests.store.invariants import check_invariants


def _store(redis_client, regions=(), modes=None, **servers):
    modes = modes or {"duel": ModeConfig("duel", accept_timeout_s=0)}
    return Store(redis_client, modes, ServersConfig(**servers), retention_s=60, regions=regions)


def _allocating(store, n=1, region=None, prefix=""):
    sessions = []
    for i in range(n):
        a = new_ticket(store, f"{prefix}a{i}", region=region)
        b = new_ticket(store, f"{prefix}b{i}", region=region)
        result, = store.claim("duel", region, [((a[0],), (b[0],))], 0)
        assert result.session_id
        sessions.append((a, b))
    return sessions


def _assignment(store, pair):
    return store.read_ticket(*pair)["assignment"]


def test_an_address_held_by_a_server_cannot_be_registered_by_another(redis_client):
    store = _store(redis_client)
    store.heartbeat_server("gs-1", "10.0.0.9:7000")
    with pytest.raises(Conflict, match="held by another server"):
        store.heartbeat_server("gs-2", "10.0.0.9:7000")
    # moving to a new address frees the old one
    store.heartbeat_server("gs-1", "10.0.0.9:7001")
    assert store.heartbeat_server("gs-2", "10.0.0.9:7000")["state"] == "free"


def test_a_static_address_cannot_be_registered_so_it_never_hosts_two_matches(redis_client):
    store = _store(redis_client, static=("10.0.0.5:7777",))
    _allocating(store)
    store.allocate(10)  # reconciles the static pool, then allocates
    with pytest.raises(Conflict, match="held by another server"):
        store.heartbeat_server("gs-1", "10.0.0.5:7777")
    with pytest.raises(Conflict, match="static server"):
        store.heartbeat_server("10.0.0.5:7777", "10.0.0.5:7777")
    assert store.stats()["servers"] == {"free": 0, "busy": 1, "stale": 0}


def test_deregistering_a_free_server_removes_it_at_once(redis_client):
    store = _store(redis_client)
    store.heartbeat_server("gs-1", "10.0.0.9:7000")
    assert store.deregister_server("gs-1") == {"server_id": "gs-1", "state": "removed"}
    assert not redis_client.exists(keys.server("gs-1"))
    assert redis_client.hget(keys.SERVER_ADDRESSES, "10.0.0.9:7000") is None
    _allocating(store)
    assert store.allocate(10) == (0, 1)  # nothing left to allocate
    with pytest.raises(NotFound):
        store.deregister_server("gs-1")
    store.heartbeat_server("gs-2", "10.0.0.9:7000")  # its address is free again


def test_deregistering_a_busy_server_removes_it_after_its_match(redis_client):
    store = _store(redis_client)
    store.heartbeat_server("gs-1", "10.0.0.9:7000")
    first, second = _allocating(store, 2)
    assert store.allocate(10) == (1, 1)
    match_id = next(_assignment(store, p[0]) for p in (first, second)
                    if store.read_ticket(*p[0])["status"] == "assigned")["match_id"]
    left = store.deregister_server("gs-1")
    assert left == {"server_id": "gs-1", "state": "leaving", "match_id": match_id}
    beat = store.heartbeat_server("gs-1", "10.0.0.9:7000")  # heartbeats go on during its match
    assert beat["state"] == "busy" and beat["leaving"] is True
    store.finish_match(match_id)
    assert not redis_client.exists(keys.server("gs-1"))
    assert store.allocate(10) == (0, 1)  # never allocated again
    assert store.stats()["servers"] == {"free": 0, "busy": 0, "stale": 0}


def test_a_static_server_cannot_be_deregistered(redis_client):
    store = _store(redis_client, static=("10.0.0.5:7777",))
    store.allocate(1)
    with pytest.raises(Conflict, match="configuration file"):
        store.deregister_server("10.0.0.5:7777")


def test_a_silent_registered_server_leaves_the_registry_after_its_retention(redis_client):
    store = _store(redis_client, heartbeat_ttl_s=0.1, retention_s=0.3)
    store.heartbeat_server("gs-1", "10.0.0.9:7000")
    store.heartbeat_server("gs-2", "10.0.0.9:7001")
    time.sleep(0.2)
    store.heartbeat_server("gs-2", "10.0.0.9:7001")
    assert store.process_deadlines(100).removed_servers == 0
    time.sleep(0.25)
    counts = store.process_deadlines(100)
    assert counts.removed_servers == 1
    assert not redis_client.exists(keys.server("gs-1")) and redis_client.exists(keys.server("gs-2"))
    assert redis_client.zscore(keys.SERVERS_FREE, "gs-1") is None
    assert redis_client.hget(keys.SERVER_ADDRESSES, "10.0.0.9:7000") is None


def test_the_static_pool_follows_the_configuration_at_the_next_start(redis_client):
    old = _store(redis_client, static=("10.0.0.5:1", "10.0.0.6:1", "10.0.0.7:1"))
    sessions = _allocating(old, 1, prefix="x")
    old.allocate(10)
    busy = _assignment(old, sessions[0][0])["server"]
    # restarted with a shorter list that drops the busy server and one free server
    kept = next(a for a in ("10.0.0.5:1", "10.0.0.6:1", "10.0.0.7:1") if a != busy)
    new = _store(redis_client, static=(kept,))
    new.allocate(10)
    assert set(redis_client.smembers(keys.STATIC_SERVERS)) == {kept}
    assert redis_client.exists(keys.server(busy))  # busy: leaves after its match
    gone = {"10.0.0.5:1", "10.0.0.6:1", "10.0.0.7:1"} - {kept, busy}
    assert not any(redis_client.exists(keys.server(a)) for a in gone)
    new.finish_match(_assignment(new, sessions[0][0])["match_id"])
    assert not redis_client.exists(keys.server(busy))
    assert redis_client.zrange(keys.SERVERS_FREE, 0, -1) == [kept]
    # an emptied list empties the pool too
    _store(redis_client).allocate(10)
    assert redis_client.zrange(keys.SERVERS_FREE, 0, -1) == []


def test_a_match_takes_a_server_of_its_region_or_one_without_a_region(redis_client):
    store = _store(redis_client, regions=("eu", "us"), static=("10.0.0.5:1",),
                   static_regions={"10.0.0.5:1": "us"})
    store.heartbeat_server("gs-eu", "10.0.1.1:1", "eu")
    eu, = _allocating(store, 1, region="eu", prefix="e")
    asia = _allocating(store, 1, region=None, prefix="n")
    store.allocate(10)
    assignment = _assignment(store, eu[0])
    assert assignment["server"] == "10.0.1.1:1" and assignment["region"] == "eu"
    # a match without a region never takes a server of a region
    assert store.read_ticket(*asia[0][0])["status"] == "matched"
    store.heartbeat_server("gs-any", "10.0.2.2:1")
    more_eu, = _allocating(store, 1, region="eu", prefix="f")
    store.allocate(10)
    assert store.read_ticket(*asia[0][0])["status"] == "assigned"
    assert store.read_ticket(*more_eu[0])["status"] == "matched"  # the one unregioned server went first
    assert store.stats()["servers"]["free"] == 1  # the static us server


def test_a_match_nobody_reports_ends_at_its_max_duration(redis_client):
    modes = {"duel": ModeConfig("duel", accept_timeout_s=0, max_match_s=0.3)}
    store = _store(redis_client, modes=modes, static=("10.0.0.5:7777",))
    (a, b), = _allocating(store)
    store.allocate(10)
    match_id = _assignment(store, a)["match_id"]
    assert store.process_deadlines(100).ended_matches == 0
    time.sleep(0.4)
    assert store.process_deadlines(100).ended_matches == 1
    for pair in (a, b):
        view = store.read_ticket(*pair)
        assert (view["status"], view["reason"]) == ("finished", "max duration")
    assert store.match(match_id)["state"] == "finished"
    assert store.stats()["servers"] == {"free": 1, "busy": 0, "stale": 0}
    assert redis_client.zcard(keys.MATCH_ENDS) == 0


@pytest.mark.parametrize("server_id", ["free", "busy", "hb", "addr", "st", "static", "free:eu"])
def test_a_server_id_cannot_name_a_key_of_the_pool(redis_client, server_id):
    store = _store(redis_client, static=("10.0.0.5:7777",))
    store.allocate(1)  # the static pool and its digest exist
    assert store.heartbeat_server(server_id, "10.0.0.9:7000")["server_id"] == server_id
    _allocating(store, 2)
    assert store.allocate(10) == (2, 0)
    assert store.process_deadlines(100).total == 0  # the deadline pass still runs
    assert store.deregister_server(server_id)["state"] in ("removed", "leaving")


def test_a_clashing_static_address_joins_the_pool_once_its_holder_leaves(redis_client):
    holder = _store(redis_client)
    holder.heartbeat_server("gs-1", "10.0.0.5:7777")
    store = _store(redis_client, static=("10.0.0.5:7777",))
    store.allocate(1)
    assert redis_client.smembers(keys.STATIC_SERVERS) == set()
    store.deregister_server("gs-1")
    store.allocate(1)
    assert redis_client.smembers(keys.STATIC_SERVERS) == {"10.0.0.5:7777"}
    assert redis_client.zrange(keys.SERVERS_FREE, 0, -1) == ["10.0.0.5:7777"]


def test_a_registered_id_equal_to_a_later_static_address_keeps_its_server(redis_client):
    store = _store(redis_client)
    store.heartbeat_server("10.0.0.5:7777", "10.0.0.9:1")
    _store(redis_client, static=("10.0.0.5:7777",)).allocate(1)
    assert redis_client.hget(keys.server("10.0.0.5:7777"), "k") == "r"
    assert redis_client.hget(keys.SERVER_ADDRESSES, "10.0.0.9:1") == "10.0.0.5:7777"
    assert store.heartbeat_server("10.0.0.5:7777", "10.0.0.9:1")["state"] == "free"


def test_a_busy_server_cannot_move_to_another_address(redis_client):
    store = _store(redis_client)
    store.heartbeat_server("gs-1", "10.0.0.9:7000")
    _allocating(store)
    store.allocate(10)
    with pytest.raises(Conflict, match="only while free"):
        store.heartbeat_server("gs-1", "10.0.0.9:7001")
    assert store.heartbeat_server("gs-1", "10.0.0.9:7000")["state"] == "busy"


def test_a_busy_server_registered_under_another_spelling_keeps_it_until_its_match_ends(redis_client):
    """Before addresses were kept canonical a server could register as 'HOST.example:07777'.
    Busy when the replicas are upgraded, it keeps that address (its players were sent there)
    rather than have its heartbeats refused as a move, which would end its match."""
    store = _store(redis_client)
    store.heartbeat_server("gs-1", "HOST.example:07777")  # as an earlier version stored it
    pair, = _allocating(store)
    store.allocate(10)
    beat = store.heartbeat_server("gs-1", "host.example:7777", sent="HOST.example:07777")
    assert (beat["state"], beat["address"]) == ("busy", "HOST.example:07777")
    with pytest.raises(Conflict, match="only while free"):  # any other spelling is a move
        store.heartbeat_server("gs-1", "host.example:7777", sent="host.example:7777")
    store.finish_match(_assignment(store, pair[0])["match_id"])
    free = store.heartbeat_server("gs-1", "host.example:7777", sent="HOST.example:07777")
    assert (free["state"], free["address"]) == ("free", "host.example:7777")
    assert redis_client.hgetall(keys.SERVER_ADDRESSES) == {"host.example:7777": "gs-1"}


def test_a_server_named_like_a_reply_tag_registers(redis_client):
    store = _store(redis_client)
    for i, server_id in enumerate(("clash", "static", "moving", "ok")):
        assert store.heartbeat_server(server_id, f"10.0.0.{i}:1")["state"] == "free"


def _emptied(store, **mode):
    """An assigned 1v1 match both players have left (the game server reported each one)."""
    modes = {"duel": ModeConfig("duel", accept_timeout_s=0, **mode)}
    store = _store(store, modes=modes, heartbeat_ttl_s=0.2)
    store.heartbeat_server("gs-1", "10.0.0.9:7000")
    (a, b), = _allocating(store)
    store.allocate(10)
    match_id = _assignment(store, a)["match_id"]
    for player in ("a0", "b0"):
        store.leave_match(match_id, player)
    return store, match_id


@pytest.mark.parametrize("how", ["server", "operator", "max duration", "server lost"])
def test_a_match_every_player_left_still_ends_and_frees_its_server(redis_client, how):
    """Its ticket count to take off the assigned count is 0, which a script once wrote as '-0':
    HINCRBY refused it, every finish of such a match failed, and its server stayed busy."""
    store, match_id = _emptied(redis_client, max_match_s=0.3)
    if how == "server":
        assert store.finish_match(match_id)["status"] == "finished"
    elif how == "operator":
        assert store.finish_match(match_id, "finished by operator")["status"] == "finished"
    else:
        if how == "server lost":
            time.sleep(0.25)  # past heartbeat_ttl_s, before max_match_s
            assert store.process_deadlines(100).lost_servers == 1
        else:
            store.heartbeat_server("gs-1", "10.0.0.9:7000")
            time.sleep(0.35)
            store.heartbeat_server("gs-1", "10.0.0.9:7000")
            assert store.process_deadlines(100).ended_matches == 1
    assert store.match(match_id)["state"] == "finished"
    assert redis_client.scard(keys.SERVERS_BUSY) == 0
    assert redis_client.hget(keys.COUNTS, "a:duel") == "0"
    check_invariants(redis_client)
