"""The invariant checker itself, on states built by the real Store and then damaged by hand:
a chaos run that reports zero violations means something only if each kind is detectable."""
from __future__ import annotations

import pytest

from mmserver.config import ModeConfig, ServersConfig
from mmserver.store import Store, keys
from tests.chaos.checker import Checker
from tests.chaos.ledger import Ledger

MODES = {"duel": ModeConfig("duel", accept_timeout_s=1, ticket_ttl_s=300)}


@pytest.fixture
def store(redis_client):
    return Store(redis_client, MODES, ServersConfig(token="t", static=("127.0.0.1:7001",)), retention_s=600)


@pytest.fixture
def ledger():
    return Ledger()


def acknowledged(store: Store, ledger: Ledger, player: str) -> str:
    view, token = store.create_ticket(player_id=player, mode="duel", mmr=1500, region=None, party=[])
    ledger.acknowledge({**view, "token": token}, (player,), "accept")
    return view["ticket_id"]


def findings(redis_client, ledger: Ledger) -> set[tuple[str, str]]:
    checker = Checker(redis_client, ledger, slack_s=0.5, retention_s=600, heartbeat_ttl_s=2, silenced=[])
    checker.check_redis()
    return {(v.kind, v.subject) for v in checker.violations}


def matched_pair(store: Store, ledger: Ledger) -> tuple[str, str, str]:
    a, b = acknowledged(store, ledger, "pa"), acknowledged(store, ledger, "pb")
    [claim] = store.claim("duel", None, [[[a], [b]]], accept_timeout_s=1)
    assert claim.session_id
    return a, b, claim.session_id


def test_a_consistent_state_has_no_findings(store, ledger, redis_client):
    first = acknowledged(store, ledger, "p1")
    acknowledged(store, ledger, "p2")
    acknowledged(store, ledger, "p3")
    token = ledger.records[first].token
    ledger.records[first].observe(store.cancel_ticket(first, token))
    a, b, session = matched_pair(store, ledger)
    assert findings(redis_client, ledger) == set()


def test_an_acknowledged_ticket_redis_forgot_is_lost(store, ledger, redis_client):
    ticket = acknowledged(store, ledger, "p1")
    redis_client.hdel(keys.queued_tickets(ticket), ticket)
    assert ("lost", ticket) in findings(redis_client, ledger)


def test_a_version_older_than_a_client_saw_is_lost(store, ledger, redis_client):
    ticket = acknowledged(store, ledger, "p1")
    ledger.records[ticket].max_version += 5
    assert ("lost", ticket) in findings(redis_client, ledger)


def test_a_player_in_two_live_tickets_is_duplicated(store, ledger, redis_client):
    ticket = acknowledged(store, ledger, "p1")
    record = redis_client.hget(keys.queued_tickets(ticket), ticket)
    redis_client.hset(keys.queued_tickets("copyofticket0"), "copyofticket0", record)
    copy = keys.unpack_queued(record)
    redis_client.zadd("mm:q:duel:", {f"copyofticket0|{copy['r']}|{copy['n']}|{copy['e']}": 10**13})
    found = findings(redis_client, ledger)
    assert ("duplicated", ticket) in found and ("duplicated", "copyofticket0") in found


def test_a_queued_ticket_out_of_its_queue_is_stranded(store, ledger, redis_client):
    ticket = acknowledged(store, ledger, "p1")
    redis_client.delete("mm:q:duel:")
    assert ("stranded", ticket) in findings(redis_client, ledger)


def test_a_ready_check_nobody_processes_is_stranded(store, ledger, redis_client):
    a, b, session = matched_pair(store, ledger)
    redis_client.zrem("mm:acc", session)
    assert ("stranded", session) in findings(redis_client, ledger)


def test_a_ready_check_past_its_deadline_is_stranded(store, ledger, redis_client):
    a, b, session = matched_pair(store, ledger)
    redis_client.zadd("mm:acc", {session: 1000})
    assert ("stranded", session) in findings(redis_client, ledger)


def test_a_terminal_ticket_without_reason_is_reported(store, ledger, redis_client):
    ticket = acknowledged(store, ledger, "p1")
    store.cancel_ticket(ticket, ledger.records[ticket].token)
    stored = keys.unpack_ticket(redis_client.get(keys.ticket(ticket)))
    del stored["w"]
    redis_client.set(keys.ticket(ticket), keys.pack_ticket(stored), keepttl=True)
    assert ("reason", ticket) in findings(redis_client, ledger)


def test_a_server_busy_with_an_ended_match_is_stranded(store, ledger, redis_client):
    store.heartbeat_server("sv1", "127.0.0.1:9001")
    redis_client.hset(keys.server("sv1"), "m", "nosuchmatch")
    redis_client.sadd("mm:sv:busy", "sv1")
    redis_client.zrem("mm:sv:free", "sv1")
    assert ("stranded", "sv1") in findings(redis_client, ledger)


def test_a_queued_record_in_the_wrong_bucket_is_reported(store, ledger, redis_client):
    ticket = acknowledged(store, ledger, "p1")
    record = redis_client.hget(keys.queued_tickets(ticket), ticket)
    redis_client.hdel(keys.queued_tickets(ticket), ticket)
    redis_client.hset("mm:tq:??", ticket, record)  # no script would ever find it there
    assert ("state", ticket) in findings(redis_client, ledger)


def test_a_ticket_both_queued_and_hashed_is_reported(store, ledger, redis_client):
    ticket = acknowledged(store, ledger, "p1")
    record = keys.unpack_queued(redis_client.hget(keys.queued_tickets(ticket), ticket))
    redis_client.set(keys.ticket(ticket), keys.pack_ticket({**record, "s": "cancelled", "v": "2", "w": "x"}))
    assert ("state", ticket) in findings(redis_client, ledger)


def test_a_player_index_entry_in_the_wrong_bucket_is_reported(store, ledger, redis_client):
    ticket = acknowledged(store, ledger, "p1")
    redis_client.hdel(keys.players("p1"), "p1")
    redis_client.hset("mm:pl:zzz", "p1", ticket)  # create would not see it: p1 could queue twice
    found = findings(redis_client, ledger)
    assert ("state", "p1") in found


def test_a_client_seeing_two_matches_is_duplicated(store, ledger, redis_client):
    ticket = acknowledged(store, ledger, "p1")
    ledger.records[ticket].match_ids |= {"m1", "m2"}
    assert ("duplicated", ticket) in findings(redis_client, ledger)


def test_a_claim_entry_left_on_a_terminal_ticket_is_reported(store, ledger, redis_client):
    ticket = acknowledged(store, ledger, "p1")
    store.cancel_ticket(ticket, ledger.records[ticket].token)
    redis_client.hset("mm:cl", ticket, "somesession|1|1")
    assert ("state", ticket) in findings(redis_client, ledger)


def test_a_claimed_ticket_counts_as_matched(store, ledger, redis_client):
    a, b, session = matched_pair(store, ledger)
    checker = Checker(redis_client, ledger, slack_s=0.5, retention_s=600, heartbeat_ttl_s=2, silenced=[])
    snap = checker.check_redis()
    assert {snap.tickets[a]["s"], snap.tickets[b]["s"]} == {"matched"}
    assert snap.tickets[a]["x"] == session


def assigned_match(store: Store, ledger: Ledger) -> str:
    a, b, session = matched_pair(store, ledger)
    store.accept(a, ledger.records[a].token)
    store.accept(b, ledger.records[b].token)
    assert store.allocate(10)[0] == 1
    return session


def test_an_assigned_match_is_consistent(store, ledger, redis_client):
    assigned_match(store, ledger)
    assert findings(redis_client, ledger) == set()


def test_a_match_that_never_ends_is_stranded(store, ledger, redis_client):
    session = assigned_match(store, ledger)
    redis_client.zrem(keys.MATCH_ENDS, session)
    assert ("stranded", session) in findings(redis_client, ledger)
    redis_client.zadd(keys.MATCH_ENDS, {session: 1000})  # long past its max duration
    assert ("stranded", session) in findings(redis_client, ledger)


def test_a_session_in_a_line_whose_region_is_not_recorded_is_stranded(store, ledger, redis_client):
    # No script walks such a line: its session would never be allocated nor time out.
    players = []
    for player in ("pa", "pb"):
        view, token = store.create_ticket(player_id=player, mode="duel", mmr=1500, region="eu", party=[])
        ledger.acknowledge({**view, "token": token}, (player,), "accept")
        players.append(view["ticket_id"])
    [claim] = store.claim("duel", "eu", [[[players[0]], [players[1]]]], accept_timeout_s=0)
    assert redis_client.zscore(keys.allocating("eu"), claim.session_id) is not None
    assert findings(redis_client, ledger) == set()
    redis_client.srem(keys.ALLOCATING_REGIONS, "eu")
    assert ("stranded", claim.session_id) in findings(redis_client, ledger)


def test_two_servers_on_one_address_are_duplicated(store, ledger, redis_client):
    store.heartbeat_server("sv1", "127.0.0.1:9001")
    redis_client.hset(keys.server("sv2"), mapping={"a": "127.0.0.1:9001", "k": "r", "h": 1})
    assert ("duplicated", "127.0.0.1:9001") in findings(redis_client, ledger)


def _delete_event(redis_client, ticket: str, kind: str) -> None:
    for entry_id, fields in redis_client.xrange(keys.EVENT_LOG):
        if fields["t"] == ticket and fields["y"] == kind:
            redis_client.xdel(keys.EVENT_LOG, entry_id)
            return
    raise AssertionError(f"no {kind} event for {ticket}")


def test_a_transition_without_its_event_is_found(store, ledger, redis_client):
    a, b, session = matched_pair(store, ledger)
    _delete_event(redis_client, a, "ticket.matched")
    assert ("state", a) in findings(redis_client, ledger)


def test_a_ticket_never_logged_as_queued_is_found(store, ledger, redis_client):
    ticket = acknowledged(store, ledger, "p1")
    _delete_event(redis_client, ticket, "ticket.queued")
    assert ("lost", ticket) in findings(redis_client, ledger)


def test_an_event_without_its_transition_is_found(store, ledger, redis_client):
    ticket = acknowledged(store, ledger, "p1")
    redis_client.xadd(keys.EVENT_LOG, {"y": "ticket.finished", "t": ticket, "m": "", "o": "duel", "d": "{}"})
    assert ("state", ticket) in findings(redis_client, ledger)
