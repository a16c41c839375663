"""1v1: the most pairs the rules allow, then the least total spread, against brute force."""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmserver.matchmaking import MatchRules, Proposal, QueuedTicket, propose_matches, window
from tests.unit.test_matcher import check_proposals

NOW = 40.0
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def allowed(a: QueuedTicket, b: QueuedTicket, rules: MatchRules, now: float) -> bool:
    older = min((a, b), key=lambda t: (t.enqueued_at, t.ticket_id))
    return abs(a.mmr - b.mmr) <= window(rules, now - older.enqueued_at)


def best_matching(tickets: list[QueuedTicket], rules: MatchRules, now: float) -> tuple[int, float]:
    """Brute force over every matching: (most pairs, least total spread at that count)."""
    best = (0, 0.0)

    def walk(rest: list[QueuedTicket], pairs: int, spread: float) -> None:
        nonlocal best
        if (pairs, -spread) > (best[0], -best[1]):
            best = (pairs, spread)
        if len(rest) < 2:
            return
        first, others = rest[0], rest[1:]
        walk(others, pairs, spread)  # the first one unmatched
        for k, other in enumerate(others):
            if allowed(first, other, rules, now):
                walk(others[:k] + others[k + 1:], pairs + 1, spread + abs(first.mmr - other.mmr))

    walk(list(tickets), 0, 0.0)
    return best


@st.composite
def duel_queues(draw, max_tickets=10):
    base = draw(st.sampled_from([0.0, 5.0, 20.0]))
    rules = MatchRules(
        team_size=1, teams=2, mmr_window=base,
        mmr_window_growth_per_s=draw(st.sampled_from([0.0, 1.0, 3.0])),
        mmr_window_max=base + draw(st.sampled_from([0.0, 30.0, 120.0])),
    )
    count = draw(st.integers(0, max_tickets))
    tickets = [
        QueuedTicket(f"t{i}", float(draw(st.integers(0, 100))), 1, float(draw(st.integers(0, 40))))
        for i in range(count)
    ]
    return rules, tickets


@FAST
@given(duel_queues())
def test_most_pairs_then_least_spread(case):
    rules, tickets = case
    proposals = propose_matches(tickets, rules, NOW)
    check_proposals(proposals, tickets, rules, NOW)
    pairs, spread = best_matching(tickets, rules, NOW)
    assert len(proposals) == pairs
    assert sum(p.mmr_spread for p in proposals) <= spread + 1e-9


@settings(FAST, max_examples=100)
@given(duel_queues(max_tickets=60))
def test_larger_queues_obey_the_rules(case):
    rules, tickets = case
    check_proposals(propose_matches(tickets, rules, NOW), tickets, rules, NOW)


@FAST
@given(duel_queues(), st.data())
def test_proposals_come_oldest_first(case, data):
    rules, tickets = case
    by_id = {t.ticket_id: t for t in tickets}
    proposals = propose_matches(tickets, rules, NOW)
    keys = []
    for p in proposals:
        (a,), (b,) = p.teams
        first, second = by_id[a], by_id[b]
        assert (first.enqueued_at, first.ticket_id) < (second.enqueued_at, second.ticket_id)
        keys.append((first.enqueued_at, first.ticket_id))
    assert keys == sorted(keys)


DUEL = MatchRules(team_size=1, teams=2, mmr_window=100, mmr_window_growth_per_s=20, mmr_window_max=1000)


def test_the_oldest_ticket_no_longer_strands_its_neighbours():
    # The old ticket's nearest neighbour is "b"; taking it would leave "a" and "c" apart.
    tickets = [
        QueuedTicket("a", 1000, 1, 39.0), QueuedTicket("old", 1090, 1, 0.0),
        QueuedTicket("b", 1095, 1, 39.0), QueuedTicket("c", 1190, 1, 39.0),
    ]
    proposals = propose_matches(tickets, DUEL, now=40)
    assert [p.teams for p in proposals] == [(("old",), ("a",)), (("b",), ("c",))]


def test_crossed_pairs_are_found_when_only_they_match_everyone():
    # "wide" (waited long) reaches down to "low"; "mid" only reaches "top"'s side through its
    # own window. Pairing neighbours would leave two tickets out.
    rules = MatchRules(team_size=1, teams=2, mmr_window=100, mmr_window_growth_per_s=25, mmr_window_max=2000)
    tickets = [
        QueuedTicket("low", 0, 1, 40.0), QueuedTicket("mid", 1000, 1, 30.0),
        QueuedTicket("wide", 1100, 1, 0.0), QueuedTicket("top", 1200, 1, 40.0),
    ]
    proposals = propose_matches(tickets, rules, now=40)
    assert sorted(p.teams for p in proposals) == [(("mid",), ("top",)), (("wide",), ("low",))]


def test_among_equal_spreads_the_older_ticket_is_matched():
    tickets = [QueuedTicket("mid", 1000, 1, 5), QueuedTicket("young", 1010, 1, 9), QueuedTicket("old", 990, 1, 1)]
    assert propose_matches(tickets, DUEL, now=9) == [Proposal((("old",), ("mid",)), 10.0)]


@pytest.mark.parametrize("count", [2001, 2000])
def test_a_dense_queue_is_fully_paired(count):
    rnd = random.Random(count)
    tickets = [QueuedTicket(f"t{i}", rnd.gauss(1500, 300), 1, rnd.uniform(0, 30)) for i in range(count)]
    proposals = propose_matches(tickets, DUEL, now=30)
    check_proposals(proposals, tickets, DUEL, 30)
    assert len(proposals) == count // 2
