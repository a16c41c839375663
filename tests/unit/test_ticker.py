"""The matchmaker tick against a real redis-server and the real matcher."""
import threading
import time
from types import SimpleNamespace

import pytest

from mmserver import ticker as ticker_module
from mmserver.config import ModeConfig, ServersConfig
from mmserver.matchmaking import Proposal
from mmserver.redis_client import connect
from mmserver.shutdown import SIGNAL, Shutdown
from mmserver.store import Store, keys
from mmserver.ticker import CLAIMS_IN_FLIGHT, Ticker, TickResult, _Batches
from tests.store.invariants import check_invariants


def watched(batches, on_send=None, after_receive=None):
    """Store.claims' batches with a test's hooks: on_send(proposals) before each send (it may
    raise: nothing is sent then), after_receive(results) after each batch is read back."""
    def send(proposals, choices=None):
        if on_send is not None:
            on_send(proposals)
        batches.send(proposals, choices)

    def receive():
        results = batches.receive()
        if after_receive is not None:
            after_receive(results)
        return results

    return SimpleNamespace(send=send, receive=receive, close=batches.close)


def _ticket(store, player, mmr=1500, mode="duel", region=None, party=()):
    view, token = store.create_ticket(player_id=player, mode=mode, mmr=mmr, region=region,
                                      party=list(party))
    return view["ticket_id"], token


def _setup(redis_client, accept=0.0, static=(), **mode):
    modes = {"duel": ModeConfig("duel", accept_timeout_s=accept, **mode)}
    store = Store(redis_client, modes, ServersConfig(static=tuple(static)), retention_s=60)
    return store, modes


def test_a_tick_matches_claims_and_allocates(redis_client):
    store, modes = _setup(redis_client, static=[f"10.0.0.{i}:7777" for i in range(3)])
    tickets = [_ticket(store, f"p{i}", mmr=1500 + i) for i in range(10)]
    result = Ticker(store, modes, shutdown=Shutdown()).tick()
    assert result.proposals == 5 and result.matches_claimed == 5
    assert result.claim_conflicts == 0
    assert result.allocated == 3 and result.stopped_early is False
    assert result.duration_s > 0
    statuses = [store.read_ticket(t, k)["status"] for t, k in tickets]
    assert statuses.count("assigned") == 6 and statuses.count("matched") == 4
    check_invariants(redis_client)


def test_regions_never_mix(redis_client):
    store, modes = _setup(redis_client)
    _ticket(store, "a", region="eu")
    _ticket(store, "b", region="us")
    result = Ticker(store, modes, shutdown=Shutdown()).tick()
    assert result.matches_claimed == 0


def test_a_tick_processes_deadlines(redis_client):
    store, modes = _setup(redis_client, accept=0.1)
    a, ta = _ticket(store, "a")
    b, tb = _ticket(store, "b")
    ticker = Ticker(store, modes, shutdown=Shutdown())
    assert ticker.tick().matches_claimed == 1
    store.accept(a, ta)
    time.sleep(0.15)
    result = ticker.tick()
    assert result.deadlines_processed == 1
    assert store.read_ticket(a, ta)["status"] == "queued"
    assert store.read_ticket(b, tb)["reason"] == "ready check timed out"


def test_a_set_shutdown_stops_the_tick_before_any_work(redis_client):
    store, modes = _setup(redis_client)
    for i in range(4):
        _ticket(store, f"p{i}")
    shutdown = Shutdown()
    shutdown.request("test", 0, SIGNAL)
    result = Ticker(store, modes, shutdown=shutdown).tick()
    assert result.stopped_early is True and result.matches_claimed == 0
    assert len(store.read_queue("duel", None)) == 4


def test_shutdown_between_batches_leaves_whole_sessions_only(redis_client):
    store, modes = _setup(redis_client)
    for i in range(40):
        _ticket(store, f"p{i}", mmr=1500 + i)
    shutdown = Shutdown()

    class StopAfterFirstClaim(Store):
        def claims(self, *args, **kwargs):
            return watched(super().claims(*args, **kwargs),
                           after_receive=lambda results: shutdown.request("test", 0, SIGNAL))

    store = StopAfterFirstClaim(redis_client, modes, ServersConfig(), retention_s=60)
    result = Ticker(store, modes, shutdown=shutdown, batch_size=5).tick()
    # the batches already sent when the stop came (at most CLAIMS_IN_FLIGHT) finish; no more
    assert result.stopped_early is True
    assert 5 <= result.matches_claimed <= 5 * CLAIMS_IN_FLIGHT < 20
    statuses = check_invariants(redis_client)
    assert list(statuses.values()).count("matched") == 2 * result.matches_claimed


def test_many_batches_in_flight_claim_every_proposal_once(redis_client):
    store, modes = _setup(redis_client)
    for i in range(60):
        _ticket(store, f"p{i}", mmr=1500 + i)
    result = Ticker(store, modes, shutdown=Shutdown(), batch_size=3).tick()
    assert result.proposals == 30 and result.matches_claimed == 30
    assert result.claim_conflicts == 0 and result.stopped_early is False
    statuses = check_invariants(redis_client)
    assert list(statuses.values()).count("matched") == 60


def test_a_held_mode_lock_makes_another_replica_skip_the_mode(redis_client):
    store, modes = _setup(redis_client)
    _ticket(store, "a")
    _ticket(store, "b")
    token = store.try_lock("mode:duel", 5)
    assert Ticker(store, modes, shutdown=Shutdown()).tick().proposals == 0
    store.unlock("mode:duel", token)
    assert Ticker(store, modes, shutdown=Shutdown()).tick().matches_claimed == 1


def _race(redis_server, redis_client, accept, rounds, players):
    store, modes = _setup(redis_client, accept=accept, mmr_window=1000)
    for i in range(players):
        _ticket(store, f"p{i}", mmr=1000 + (i * 7) % 500)
    clients = [redis_server.client(decode_responses=True) for _ in range(2)]
    tickers = [Ticker(Store(c, modes, ServersConfig(), retention_s=60), modes,
                      shutdown=Shutdown(), batch_size=7, mode_lock_s=0) for c in clients]
    barrier = threading.Barrier(2)
    results = [[], []]
    errors = []

    def run(i):
        try:
            barrier.wait()
            for _ in range(rounds):
                results[i].append(tickers[i].tick())
                time.sleep(0.005 * i)
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,), name=f"ticker-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in clients:
        c.close()
    assert not errors, errors
    return results


def test_two_tickers_racing_never_put_a_ticket_in_two_sessions(redis_server, redis_client):
    results = _race(redis_server, redis_client, accept=0, rounds=10, players=300)
    statuses = check_invariants(redis_client)
    assert len(statuses) == 300
    assert list(statuses.values()).count("matched") == 300  # all paired, each exactly once
    claimed = sum(r.matches_claimed for rs in results for r in rs)
    assert claimed == 150
    written = [key[len("mm:s:"):] for key in redis_client.scan_iter("mm:s:*")]
    pending = redis_client.hkeys("mm:cs")  # created by a claim, not loaded yet
    assert len(written) + len(pending) == len(set(written) | set(pending)) == 150


def test_racing_tickers_with_failing_ready_checks_account_for_every_ticket(redis_server, redis_client):
    # Ready checks nobody answers: sessions keep failing, tickets keep moving between queue
    # and sessions while both replicas claim and process deadlines at once.
    _race(redis_server, redis_client, accept=0.03, rounds=15, players=200)
    statuses = check_invariants(redis_client)
    assert len(statuses) == 200
    assert set(statuses.values()) <= {"queued", "matched", "cancelled"}
    assert "cancelled" in statuses.values()


def _queue_of_tanks_and_dps(client) -> dict[str, ModeConfig]:
    """A 2v2 mode with one tank and one dps a team, no ready check, and 40 solo tickets queued
    in it, tank and dps in turn (MMR 1500 up): 10 matches. Its modes, by name."""
    modes = {"ranked": ModeConfig("ranked", team_size=2, teams=2, accept_timeout_s=0,
                                  roles=(("tank", 1), ("dps", 1)))}
    store = Store(client, modes, ServersConfig(), retention_s=60)
    for i in range(40):
        store.create_ticket(player_id=f"p{i}", mode="ranked", mmr=1500 + i, region=None, party=[],
                            roles=[["tank"] if i % 2 else ["dps"]])
    return modes


def test_a_mode_with_rules_claims_its_batches_while_it_matches(redis_client):
    # 2v2 with roles: batches of 2 proposals are claimed as the matcher forms them; every
    # proposal is claimed once, and the roles chosen reach the sessions.
    modes = _queue_of_tanks_and_dps(redis_client)
    seen = []

    class Counting(Store):
        def claims(self, *args, **kwargs):
            return watched(super().claims(*args, **kwargs), on_send=lambda proposals: seen.append(len(proposals)))

    store = Counting(redis_client, modes, ServersConfig(), retention_s=60)
    result = Ticker(store, modes, shutdown=Shutdown(), batch_size=2).tick()
    assert result.proposals == 10 and result.matches_claimed == 10
    assert result.claim_conflicts == 0 and seen == [2] * 5
    statuses = check_invariants(redis_client)
    assert list(statuses.values()).count("matched") == 40
    assert store.read_queue("ranked", None) == []


def test_tickets_kept_waiting_are_answered_from_the_last_tick_until_the_queue_changes_near_them(redis_client):
    # Tanks only: every ticket waits for "roles". The first tick works each answer out; the
    # next ones reuse them (same window: no growth) and record the same explanations, until
    # healers join and matches form.
    modes = {"ranked": ModeConfig("ranked", team_size=2, teams=2, accept_timeout_s=0, mmr_window_growth_per_s=0,
                                  roles=(("tank", 1), ("healer", 1)))}
    store = Store(redis_client, modes, ServersConfig(), retention_s=60)
    tanks = [store.create_ticket(player_id=f"p{i}", mode="ranked", mmr=1500 + i, region=None, party=[],
                                 roles=[["tank"]]) for i in range(40)]
    ticker = Ticker(store, modes, shutdown=Shutdown())
    assert ticker.tick().answers_reused == 0
    assert ticker.tick().answers_reused == 40
    views = [store.read_ticket(view["ticket_id"], token) for view, token in tanks]
    assert {view["matching"]["blocked_by"] for view in views} == {"roles"}
    for i in range(2):
        store.create_ticket(player_id=f"h{i}", mode="ranked", mmr=1510 + i, region=None, party=[],
                            roles=[["healer"]])
    result = ticker.tick()
    assert result.matches_claimed == 1 and result.answers_reused < 38
    check_invariants(redis_client)


def test_a_failed_claim_while_matching_is_raised_and_the_others_counted(redis_client):
    modes = {"ranked": ModeConfig("ranked", team_size=1, teams=2, accept_timeout_s=0, roles=(("dps", 1),))}
    calls = []

    def fail_the_third(proposals):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("claim failed")

    class FailingThird(Store):
        def claims(self, *args, **kwargs):
            return watched(super().claims(*args, **kwargs), on_send=fail_the_third)

    store = FailingThird(redis_client, modes, ServersConfig(), retention_s=60)
    for i in range(20):
        store.create_ticket(player_id=f"p{i}", mode="ranked", mmr=1500 + i, region=None, party=[])
    counts = TickResult()
    ticker = Ticker(store, modes, shutdown=Shutdown(), batch_size=2, mode_lock_s=0)
    try:
        ticker._match_queue("ranked", None, counts)
    except RuntimeError as error:
        assert str(error) == "claim failed"
    else:
        raise AssertionError("the failed claim was not raised")
    # every batch sent before the failed one was read back and counted
    assert counts.matches_claimed == 2 * (len(calls) - 1)
    statuses = check_invariants(redis_client)
    assert list(statuses.values()).count("matched") == 2 * counts.matches_claimed


def test_a_matcher_failure_with_batches_in_flight_reads_them_back_and_gives_every_connection_back(
        redis_server, redis_client, monkeypatch):
    client = connect(redis_server.url)  # the service's client: the stale-reply guard, the direct path
    modes = _queue_of_tanks_and_dps(client)
    store = Store(client, modes, ServersConfig(), retention_s=60)
    add = ticker_module._Claims.add
    formed = []

    def add_then_fail(claims, proposal):
        add(claims, proposal)
        formed.append(proposal)
        if len(formed) == 4:  # two batches of 2 sent, both in flight
            assert claims._stream.in_flight == 2
            raise KeyError("matcher bug")

    monkeypatch.setattr(ticker_module._Claims, "add", add_then_fail)
    counts = TickResult()
    try:
        with pytest.raises(KeyError, match="matcher bug"):
            Ticker(store, modes, shutdown=Shutdown(), batch_size=2)._match_queue("ranked", None, counts)
        pool = client.connection_pool
        assert counts.matches_claimed == 4  # both batches in flight were read back and counted
        assert not pool._in_use_connections
        assert all(connection.replies_owed == 0 for connection in pool._available_connections)
        assert client.ping() is True
        statuses = check_invariants(redis_client)
        assert list(statuses.values()).count("matched") == 16
    finally:
        client.close()


def test_claim_batches_hold_at_most_claim_tickets_tickets(redis_client, monkeypatch):
    # 2v2 proposals (4 tickets) under a bound of 10 tickets: 2 proposals a script, though
    # batch_size allows 50; every proposal is still claimed once.
    monkeypatch.setattr(ticker_module, "CLAIM_TICKETS", 10)
    modes = {"squad": ModeConfig("squad", team_size=2, teams=2, accept_timeout_s=0)}
    seen = []

    class Counting(Store):
        def claims(self, *args, **kwargs):
            return watched(super().claims(*args, **kwargs),
                           on_send=lambda proposals: seen.append(sum(len(team) for teams in proposals for team in teams)))

    store = Counting(redis_client, modes, ServersConfig(), retention_s=60)
    for i in range(40):
        store.create_ticket(player_id=f"p{i}", mode="squad", mmr=1500 + i, region=None, party=[])
    result = Ticker(store, modes, shutdown=Shutdown(), batch_size=50).tick()
    assert result.proposals == 10 and result.matches_claimed == 10 and result.claim_conflicts == 0
    assert seen == [8] * 5
    statuses = check_invariants(redis_client)
    assert list(statuses.values()).count("matched") == 40


def test_batches_cut_by_proposals_and_tickets(monkeypatch):
    monkeypatch.setattr(ticker_module, "CLAIM_TICKETS", 10)

    def proposal(tickets):
        return Proposal((tuple(f"t{k}" for k in range(tickets)),), 0.0)

    def cut(sizes, size=3):
        batches = _Batches(size)
        out = [batch for n in sizes for batch in batches.add(proposal(n))]
        if batches.pending:
            out.append(batches.take())
        return [[sum(map(len, p.teams)) for p in batch] for batch in out]

    assert cut([1, 1, 1, 1]) == [[1, 1, 1], [1]]  # by proposals
    assert cut([4, 4, 4]) == [[4, 4], [4]]  # the third would overflow 10 tickets
    assert cut([5, 5, 1]) == [[5, 5], [1]]  # exactly 10 closes a batch
    assert cut([2, 12, 3]) == [[2], [12], [3]]  # a proposal over the bound goes alone
    assert cut([]) == []


def test_allocation_scripts_take_sessions_by_the_tickets_of_the_largest_match(redis_client, monkeypatch):
    # 5v5 (10 players a match) under SESSION_TICKETS = 25: two sessions per allocation script,
    # though batch_size allows 500; every match still gets a server in the same tick.
    monkeypatch.setattr(ticker_module, "SESSION_TICKETS", 25)
    modes = {"team": ModeConfig("team", team_size=5, teams=2, accept_timeout_s=0)}
    limits = []

    class Counting(Store):
        def allocate_page(self, limit):
            limits.append(limit)
            return super().allocate_page(limit)

    store = Counting(redis_client, modes, ServersConfig(static=tuple(f"10.0.0.{n}:7777" for n in range(1, 9))),
                     retention_s=60)
    for i in range(50):
        store.create_ticket(player_id=f"p{i}", mode="team", mmr=1500 + i, region=None, party=[])
    result = Ticker(store, modes, shutdown=Shutdown()).tick()
    assert result.matches_claimed == 5 and result.allocated == 5
    assert limits == [2] * 3  # 2 + 2 + 1: the last page was not full
    statuses = check_invariants(redis_client)
    assert list(statuses.values()).count("assigned") == 50


def test_sessions_without_a_server_keep_only_their_own_region_waiting(redis_client, monkeypatch):
    # Every server is in "us". Six "eu" matches wait first (no "eu" server): more than a
    # tick's batch_size and than a page (two sessions). They wait in their own region's line,
    # and the "us" matches claimed after them get servers in the same tick, every tick.
    monkeypatch.setattr(ticker_module, "SESSION_TICKETS", 20)
    modes = {"team": ModeConfig("team", team_size=5, teams=2, accept_timeout_s=0)}
    us = tuple(f"10.0.1.{n}:7777" for n in range(1, 9))
    store = Store(redis_client, modes, ServersConfig(static=us, static_regions={a: "us" for a in us}),
                  retention_s=60)

    def players(region, matches, start):
        for n in range(start, start + 10 * matches):
            store.create_ticket(player_id=f"p{n}", mode="team", mmr=1500, region=region, party=[])

    players("eu", 6, 0)
    ticker = Ticker(store, modes, shutdown=Shutdown(), batch_size=4)
    first = ticker.tick()
    assert first.matches_claimed == 6 and first.allocated == 0
    players("us", 5, 100)
    second = ticker.tick()
    assert second.matches_claimed == 5 and second.allocated == 5
    players("us", 2, 200)
    third = ticker.tick()
    assert third.matches_claimed == 2 and third.allocated == 2  # 7 of the 8 us servers
    statuses = check_invariants(redis_client)
    assert list(statuses.values()).count("assigned") == 70 and list(statuses.values()).count("matched") == 60
    assert redis_client.zcard(keys.allocating("eu")) == 6 and redis_client.zcard(keys.allocating("us")) == 0
    assert store.stats()["sessions"]["allocating"] == 6
    # Two "eu" servers appear: the two oldest "eu" matches get them.
    eu = ("10.0.2.1:7777", "10.0.2.2:7777")
    oldest = redis_client.zrange(keys.allocating("eu"), 0, 1)
    with_eu = Store(redis_client, modes, ServersConfig(static=us + eu, static_regions={
        **{a: "us" for a in us}, **{a: "eu" for a in eu}}), retention_s=60)
    assert Ticker(with_eu, modes, shutdown=Shutdown(), batch_size=4).tick().allocated == 2
    assert all(redis_client.hget(keys.session(sid), "st") == "assigned" for sid in oldest)
    assert redis_client.zcard(keys.allocating("eu")) == 4
    check_invariants(redis_client)


def test_deadline_scripts_take_sessions_by_the_tickets_of_the_largest_match(redis_client, monkeypatch):
    # 25 5v5 ready checks time out; one session a deadline script (SESSION_TICKETS = 10, batch
    # size 500), and the tick runs as many scripts as it would have run of 500 sessions (20):
    # more than 20 here, every one of them is processed in this tick.
    monkeypatch.setattr(ticker_module, "SESSION_TICKETS", 10)
    modes = {"team": ModeConfig("team", team_size=5, teams=2, accept_timeout_s=0.2)}
    limits = []

    class Counting(Store):
        def process_deadlines(self, limit):
            limits.append(limit)
            return super().process_deadlines(limit)

    store = Counting(redis_client, modes, ServersConfig(), retention_s=60)
    for i in range(250):
        store.create_ticket(player_id=f"p{i}", mode="team", mmr=1500 + i, region=None, party=[])
    ticker = Ticker(store, modes, shutdown=Shutdown())
    assert ticker.tick().matches_claimed == 25
    time.sleep(0.25)
    limits.clear()
    result = ticker.tick()
    assert result.deadlines_processed == 25 and set(limits) == {1} and len(limits) == 25
    statuses = check_invariants(redis_client)
    assert list(statuses.values()).count("cancelled") == 250
