"""Sessions wait for a server in one line per region (keys.allocating), so that a region
without a free server keeps only its own sessions waiting; the single line of releases
before (`mm:alloc`) is still served and timed out."""
from mmserver import ticker as ticker_module
from mmserver.config import ModeConfig, ServersConfig
from mmserver.matchmaking.rules import Latency
from mmserver.shutdown import Shutdown
from mmserver.store import Store, keys
from mmserver.ticker import Ticker
from tests.store.conftest import new_ticket
from tests.store.invariants import check_invariants

DUEL = ModeConfig("duel", accept_timeout_s=0)
NEAREST = ModeConfig("nearest", accept_timeout_s=0, latency=Latency(max_ms=50.0))


def _waiting_duels(redis_client, pairs, region=None, servers=ServersConfig()):
    store = Store(redis_client, {"duel": DUEL}, servers, retention_s=60)
    sids = []
    for i in range(pairs):
        tag = f"{region or '-'}{i}-{redis_client.incr('test:players')}"
        a, b = new_ticket(store, f"a{tag}", region=region), new_ticket(store, f"b{tag}", region=region)
        result, = store.claim("duel", region, [((a[0],), (b[0],))], 0)
        sids.append(result.session_id)
    return store, sids


def test_a_session_waits_in_the_line_of_its_region(redis_client):
    _store, eu = _waiting_duels(redis_client, 2, region="eu")
    _store, none = _waiting_duels(redis_client, 1)
    line = keys.allocating("eu")
    assert redis_client.zrange(line, 0, -1) == sorted(eu, key=lambda sid: (redis_client.zscore(line, sid), sid))
    assert redis_client.zrange(keys.allocating(None), 0, -1) == none
    assert redis_client.smembers(keys.ALLOCATING_REGIONS) == {"eu", ""}
    assert not redis_client.exists(keys.ALLOCATING)
    check_invariants(redis_client)


def test_the_region_the_rules_chose_is_the_line(redis_client):
    store = Store(redis_client, {"nearest": NEAREST}, ServersConfig(), retention_s=60, regions=("eu", "us"))
    for player in ("a", "b"):
        store.create_ticket(player_id=player, mode="nearest", mmr=1500, region=None, party=[],
                            latencies={"eu": 20.0, "us": 120.0})
    ticker = Ticker(store, {"nearest": NEAREST}, shutdown=Shutdown(), regions=("eu", "us"))
    result = ticker.tick()
    assert result.matches_claimed == 1 and result.allocated == 0
    sid, = redis_client.zrange(keys.allocating("eu"), 0, -1)
    assert store.stats()["sessions"]["allocating"] == 1
    check_invariants(redis_client)
    servers = ServersConfig(static=("10.0.0.1:7777", "10.0.0.2:7777"),
                            static_regions={"10.0.0.1:7777": "us", "10.0.0.2:7777": "eu"})
    with_servers = Store(redis_client, {"nearest": NEAREST}, servers, retention_s=60, regions=("eu", "us"))
    assert with_servers.allocate(10) == (1, 0)
    assert redis_client.hget(keys.session(sid), "sv") == "10.0.0.2:7777"


def test_a_line_whose_region_has_no_server_is_not_read(redis_client):
    us = ("10.0.1.1:7777",)
    servers = ServersConfig(static=us, static_regions={us[0]: "us"})
    store, _eu = _waiting_duels(redis_client, 30, region="eu", servers=servers)
    _store, (us_sid,) = _waiting_duels(redis_client, 1, region="us")
    redis_client.config_resetstat()
    assert store.allocate(5) == (1, 30)
    stats = redis_client.info("commandstats")
    # One ZRANGE per line for its oldest session (eu, us, and the empty line of no region),
    # one more for the us line's sessions: the eu line's sessions are never read.
    assert stats["cmdstat_zrange"]["calls"] <= 5
    assert redis_client.hget(keys.session(us_sid), "st") == "assigned"
    check_invariants(redis_client)


def test_the_line_of_releases_before_is_moved_allocated_and_timed_out(redis_client):
    store, sids = _waiting_duels(redis_client, 3)
    # As a release before left them: one line for every region.
    for sid, deadline in redis_client.zrange(keys.allocating(None), 0, -1, withscores=True):
        redis_client.zadd(keys.ALLOCATING, {sid: deadline})
    redis_client.delete(keys.allocating(None))
    check_invariants(redis_client)
    assert store.stats()["sessions"]["allocating"] == 3
    # One of them past its deadline: the deadlines still find it there.
    late = sids[0]
    redis_client.zadd(keys.ALLOCATING, {late: 1})
    counts = store.process_deadlines(100)
    assert counts.allocation_timeouts == 1 and redis_client.zscore(keys.ALLOCATING, late) is None
    # The others are moved to their line and given servers.
    with_servers = Store(redis_client, {"duel": DUEL}, ServersConfig(static=("10.0.0.1:7777", "10.0.0.2:7777")),
                         retention_s=60)
    assert with_servers.allocate(10) == (2, 0)
    assert not redis_client.exists(keys.ALLOCATING) and not redis_client.exists(keys.allocating(None))
    assert all(redis_client.hget(keys.session(sid), "st") == "assigned" for sid in sids[1:])
    statuses = check_invariants(redis_client)
    assert sorted(statuses.values()) == ["assigned"] * 4 + ["queued"] * 2


def test_sessions_past_their_deadline_in_any_line_are_dissolved(redis_client):
    _store, eu = _waiting_duels(redis_client, 2, region="eu")
    store, us = _waiting_duels(redis_client, 2, region="us")
    for line, sid in ((keys.allocating("eu"), eu[0]), (keys.allocating("us"), us[1])):
        redis_client.zadd(line, {sid: 1})
    # A limit of one a call: the second call takes the other, and says when none is left.
    first = store.process_deadlines(1)
    assert first.allocation_timeouts == 1 and first.more
    second = store.process_deadlines(1)
    assert second.allocation_timeouts == 1 and not second.more
    assert redis_client.zrange(keys.allocating("eu"), 0, -1) == [eu[1]]
    assert redis_client.zrange(keys.allocating("us"), 0, -1) == [us[0]]
    check_invariants(redis_client)


def test_more_sessions_of_releases_before_than_a_call_takes_do_not_hold_back_other_regions(redis_client,
                                                                                          monkeypatch):
    # The old single line holds six "eu" sessions (no "eu" server), then two "us" ones with
    # "us" servers free. Calls take two sessions: the tick moves the old line in as many calls
    # as it takes, and the "us" sessions behind the "eu" ones get their servers in that tick.
    us = tuple(f"10.0.1.{n}:7777" for n in range(1, 3))
    servers = ServersConfig(static=us, static_regions={a: "us" for a in us})
    store, _eu = _waiting_duels(redis_client, 6, region="eu", servers=servers)
    _store, us_sids = _waiting_duels(redis_client, 2, region="us")
    for region in ("eu", "us"):  # as a release before left them: one line, no region recorded
        for sid, deadline in redis_client.zrange(keys.allocating(region), 0, -1, withscores=True):
            redis_client.zadd(keys.ALLOCATING, {sid: deadline})
        redis_client.delete(keys.allocating(region))
    redis_client.delete(keys.ALLOCATING_REGIONS)
    assert set(redis_client.zrange(keys.ALLOCATING, -2, -1)) == set(us_sids)  # behind the "eu" ones
    monkeypatch.setattr(ticker_module, "SESSION_TICKETS", 4)  # two duels a call
    result = Ticker(store, {"duel": DUEL}, shutdown=Shutdown()).tick()
    assert result.allocated == 2
    assert all(redis_client.hget(keys.session(sid), "st") == "assigned" for sid in us_sids)
    assert not redis_client.exists(keys.ALLOCATING)
    assert redis_client.zcard(keys.allocating("eu")) == 6
    check_invariants(redis_client)


def test_an_accepted_session_waits_in_its_line_and_its_region_is_recorded(redis_client):
    mode = ModeConfig("duel", accept_timeout_s=5)
    store = Store(redis_client, {"duel": mode}, ServersConfig(), retention_s=60)
    a, b = new_ticket(store, "a", region="eu"), new_ticket(store, "b", region="eu")
    result, = store.claim("duel", "eu", [((a[0],), (b[0],))], 5)
    assert redis_client.zscore(keys.ACCEPTING, result.session_id) is not None
    # As if a release before had claimed it: its region recorded nowhere.
    redis_client.delete(keys.ALLOCATING_REGIONS)
    store.accept(a[0], a[1])
    store.accept(b[0], b[1])
    assert redis_client.zrange(keys.allocating("eu"), 0, -1) == [result.session_id]
    assert "eu" in redis_client.smembers(keys.ALLOCATING_REGIONS)
    check_invariants(redis_client)
    # The line is walked: its session past its deadline is dissolved.
    redis_client.zadd(keys.allocating("eu"), {result.session_id: 1})
    assert store.process_deadlines(10).allocation_timeouts == 1


def test_a_session_of_a_region_takes_a_server_without_a_region_when_its_own_are_gone(redis_client):
    servers = ServersConfig(static=("10.0.0.1:7777",))  # no region
    store, (eu_sid,) = _waiting_duels(redis_client, 1, region="eu", servers=servers)
    assert store.allocate(10) == (1, 0)
    assert redis_client.hget(keys.session(eu_sid), "sv") == "10.0.0.1:7777"


def test_lines_share_the_servers_without_a_region_oldest_session_first(redis_client):
    # Sessions alternate between "eu" and "us" (oldest first: eu0, us0, eu1, us1, ...); three
    # servers without a region: the three oldest get them, whichever their line.
    servers = ServersConfig(static=("10.0.0.1:7777", "10.0.0.2:7777", "10.0.0.3:7777"))
    order = []
    for i in range(3):
        for region in ("eu", "us"):
            _store, (sid,) = _waiting_duels(redis_client, 1, region=region)
            order.append(sid)
            redis_client.zadd(keys.allocating(region), {sid: 10_000_000_000_000 + len(order)})
    store = Store(redis_client, {"duel": DUEL}, servers, retention_s=60)
    assert store.allocate(10) == (3, 3)
    assert [bool(redis_client.hget(keys.session(sid), "sv")) for sid in order] == [True] * 3 + [False] * 3
    check_invariants(redis_client)


def test_a_session_found_in_another_regions_line_is_moved_to_its_own(redis_client):
    # No script puts one there; should one be found, it moves with its deadline, and the
    # server it came upon stays free for the sessions of that line.
    eu_server = ("10.0.2.1:7777",)
    servers = ServersConfig(static=eu_server, static_regions={eu_server[0]: "eu"})
    store, (sid,) = _waiting_duels(redis_client, 1, region="us", servers=servers)
    deadline = redis_client.zscore(keys.allocating("us"), sid)
    redis_client.zrem(keys.allocating("us"), sid)
    redis_client.zadd(keys.allocating("eu"), {sid: deadline})
    redis_client.sadd(keys.ALLOCATING_REGIONS, "eu")
    page = store.allocate_page(10)
    assert page.allocated == 0 and page.more and page.waiting == 1
    assert redis_client.zscore(keys.allocating("us"), sid) == deadline
    assert not redis_client.zcard(keys.allocating("eu"))
    assert redis_client.zcard(keys.free_servers("eu")) == 1
    check_invariants(redis_client)
