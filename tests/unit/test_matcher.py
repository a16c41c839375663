"""The matching rules, checked against brute force on small queues."""
from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mmserver.config import ModeConfig
from mmserver.matchmaking import MatchRules, Proposal, QueuedTicket, match_queue, propose_matches, window

NOW = 1000.0
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- independent reference checks -------------------------------------------------------------

def packs(sizes: list[int], team_size: int, teams: int) -> bool:
    """Brute force: can these parties fill `teams` teams of exactly `team_size`?"""
    if sum(sizes) != team_size * teams:
        return False
    for assignment in itertools.product(range(teams), repeat=len(sizes)):
        totals = [0] * teams
        for size, team in zip(sizes, assignment):
            totals[team] += size
        if all(total == team_size for total in totals):
            return True
    return False


def oldest(tickets: list[QueuedTicket]) -> QueuedTicket:
    return min(tickets, key=lambda t: (t.enqueued_at, t.ticket_id))


def valid_match_exists(anchor: QueuedTicket, tickets: list[QueuedTicket], rules: MatchRules, now: float) -> bool:
    """Brute force: is there a valid match holding `anchor`, anchor being the oldest ticket?"""
    others = [t for t in tickets if t is not anchor]
    need = rules.team_size * rules.teams
    limit = window(rules, now - anchor.enqueued_at)
    for count in range(0, need):
        for group in itertools.combinations(others, count):
            chosen = (anchor, *group)
            if sum(t.size for t in chosen) != need:
                continue
            mmrs = [t.mmr for t in chosen]
            if max(mmrs) - min(mmrs) <= limit and packs([t.size for t in chosen], rules.team_size, rules.teams):
                return True
    return False


def check_proposals(proposals: list[Proposal], tickets: list[QueuedTicket], rules: MatchRules, now: float) -> None:
    """Every rule a proposal must satisfy, whatever the heuristics chose."""
    by_id = {t.ticket_id: t for t in tickets}
    seen: set[str] = set()
    for proposal in proposals:
        assert len(proposal.teams) == rules.teams
        members = []
        for team in proposal.teams:
            assert sum(by_id[i].size for i in team) == rules.team_size  # exact sizes, parties whole
            members.extend(by_id[i] for i in team)
        ids = [t.ticket_id for t in members]
        assert len(set(ids)) == len(ids)
        assert not seen & set(ids), "a ticket is in two proposals"
        seen.update(ids)
        mmrs = [t.mmr for t in members]
        spread = max(mmrs) - min(mmrs)
        assert proposal.mmr_spread == pytest.approx(spread)
        assert spread <= window(rules, now - oldest(members).enqueued_at) + 1e-9


# --- strategies --------------------------------------------------------------------------------

@st.composite
def queues(draw, team_sizes=(1, 2, 3), teams_choices=(2, 3), max_tickets=9, max_players=6, parties=True):
    team_size = draw(st.sampled_from(team_sizes))
    teams = draw(st.sampled_from([k for k in teams_choices if k * team_size <= max_players] or [2]))
    base = draw(st.sampled_from([0.0, 10.0, 50.0]))
    rules = MatchRules(
        team_size=team_size,
        teams=teams,
        mmr_window=base,
        mmr_window_growth_per_s=draw(st.sampled_from([0.0, 1.0, 5.0])),
        mmr_window_max=base + draw(st.sampled_from([0.0, 40.0, 200.0])),
    )
    count = draw(st.integers(0, max_tickets))
    tickets = [
        QueuedTicket(
            ticket_id=f"t{i}",
            mmr=float(draw(st.integers(0, 150))),
            size=draw(st.integers(1, team_size)) if parties else 1,
            enqueued_at=float(draw(st.integers(0, 40))),
        )
        for i in range(count)
    ]
    return rules, tickets


# --- properties --------------------------------------------------------------------------------

@FAST
@given(queues())
def test_every_proposal_obeys_the_rules(case):
    rules, tickets = case
    check_proposals(propose_matches(tickets, rules, NOW - 960), tickets, rules, NOW - 960)


@FAST
@given(queues(max_tickets=40, max_players=12, team_sizes=(1, 2, 3, 4, 5), teams_choices=(2, 3, 4)))
def test_rules_hold_on_larger_queues(case):
    rules, tickets = case
    check_proposals(propose_matches(tickets, rules, NOW - 960), tickets, rules, NOW - 960)


@FAST
@given(queues(max_tickets=40, max_players=12, team_sizes=(1, 2, 3, 5), teams_choices=(2, 3)))
def test_each_proposal_is_handed_on_once_in_the_results_order(case):
    """The ticker claims what on_proposal hands it while the matcher goes on, then claims the
    result's proposals after those it was handed: both must be the same list, in order. (1v1
    pairs, solos and parties each take a search of their own.)"""
    rules, tickets = case
    handed: list[Proposal] = []
    proposals = propose_matches(tickets, rules, NOW - 960, handed.append)
    assert [id(p) for p in handed] == [id(p) for p in proposals]
    assert match_queue(tickets, rules, NOW - 960).proposals == proposals


@settings(FAST, max_examples=600)
@given(queues(max_tickets=8))
def test_the_oldest_ticket_is_matched_whenever_it_can_be(case):
    rules, tickets = case
    assume(tickets)
    # 1v1 puts the number of pairs and their spread first (tests/unit/test_matcher_duels.py).
    assume((rules.team_size, rules.teams) != (1, 2))
    now = NOW - 960
    first = oldest(tickets)
    matched = {i for p in propose_matches(tickets, rules, now) for team in p.teams for i in team}
    assert (first.ticket_id in matched) == valid_match_exists(first, tickets, rules, now)


@FAST
@given(queues(team_sizes=(1, 2), teams_choices=(2,), max_tickets=12, parties=False))
def test_two_teams_of_up_to_two_solos_are_as_even_as_possible(case):
    rules, tickets = case
    by_id = {t.ticket_id: t for t in tickets}
    for proposal in propose_matches(tickets, rules, NOW - 960):
        sums = [sum(by_id[i].mmr for i in team) for team in proposal.teams]
        members = [by_id[i].mmr for team in proposal.teams for i in team]
        total = sum(members)
        best = min(
            abs(total - 2 * sum(members[k] for k in half))
            for half in itertools.combinations(range(len(members)), rules.team_size)
        )
        assert abs(sums[0] - sums[1]) == pytest.approx(best)


@FAST
@given(queues(max_tickets=30, max_players=12, team_sizes=(2, 3, 4, 5), teams_choices=(2, 3)))
def test_no_same_size_exchange_would_even_two_teams(case):
    rules, tickets = case
    by_id = {t.ticket_id: t for t in tickets}
    for proposal in propose_matches(tickets, rules, NOW - 960):
        teams = [[by_id[i] for i in team] for team in proposal.teams]
        sums = [sum(t.mmr * t.size for t in team) for team in teams]
        for a, b in itertools.permutations(range(len(teams)), 2):
            gap = sums[a] - sums[b]
            for x in teams[a]:
                for y in teams[b]:
                    if x.size == y.size:
                        shifted = (x.mmr - y.mmr) * x.size
                        assert abs(gap - 2 * shifted) >= abs(gap) - 1e-6


@FAST
@given(st.data())
def test_result_does_not_depend_on_input_order(data):
    rules, tickets = data.draw(queues(max_tickets=20, max_players=10, team_sizes=(1, 2, 5)))
    # Distinct MMRs: equal ones are ordered as given, which is allowed to matter.
    tickets = [QueuedTicket(t.ticket_id, t.mmr + k / 1000, t.size, t.enqueued_at) for k, t in enumerate(tickets)]
    shuffled = data.draw(st.permutations(tickets))
    assert propose_matches(shuffled, rules, NOW - 960) == propose_matches(tickets, rules, NOW - 960)


# --- examples ----------------------------------------------------------------------------------

DUEL = MatchRules(team_size=1, teams=2, mmr_window=100, mmr_window_growth_per_s=20, mmr_window_max=1000)


def ticket(ticket_id: str, mmr: float, enqueued_at: float = 0.0, size: int = 1) -> QueuedTicket:
    return QueuedTicket(ticket_id, mmr, size, enqueued_at)


def test_window_widens_with_waiting_and_stops_at_the_cap():
    assert window(DUEL, 0) == 100
    assert window(DUEL, -5) == 100  # a clock step backwards never narrows below the base
    assert window(DUEL, 10) == 300
    assert window(DUEL, 45) == 1000
    assert window(DUEL, 10_000) == 1000


def test_a_pair_too_far_apart_is_matched_only_after_enough_waiting():
    tickets = [ticket("old", 1000, enqueued_at=0), ticket("new", 1300, enqueued_at=9)]
    # The old ticket's window reaches 300 after 10 s; the young one's does not count.
    assert propose_matches(tickets, DUEL, now=9.9) == []
    assert propose_matches(tickets, DUEL, now=10.0) == [Proposal((("old",), ("new",)), 300.0)]


def test_the_window_cap_keeps_far_pairs_apart_forever():
    capped = MatchRules(team_size=1, teams=2, mmr_window=100, mmr_window_growth_per_s=20, mmr_window_max=250)
    far = [ticket("a", 0), ticket("b", 251)]
    near = [ticket("a", 0), ticket("b", 250)]
    assert propose_matches(far, capped, now=1e6) == []
    assert [p.teams for p in propose_matches(near, capped, now=1e6)] == [(("a",), ("b",))]


def test_an_unmatchable_old_ticket_does_not_block_younger_ones():
    tickets = [ticket("lonely", 0, enqueued_at=0), ticket("x", 2000, enqueued_at=5), ticket("y", 2050, enqueued_at=6)]
    assert [p.teams for p in propose_matches(tickets, DUEL, now=6)] == [(("x",), ("y",))]


def test_the_longest_waiting_ticket_picks_first():
    # "old" and "young" both want "mid"; the older one gets it.
    tickets = [ticket("mid", 1000, enqueued_at=5), ticket("young", 1010, enqueued_at=9), ticket("old", 990, enqueued_at=1)]
    proposals = propose_matches(tickets, DUEL, now=9)
    assert [p.teams for p in proposals] == [(("old",), ("mid",))]


def test_ties_in_waiting_time_go_by_ticket_id():
    tickets = [ticket("b", 1000), ticket("a", 1010), ticket("c", 1009)]
    # "a" is served first and takes its nearest neighbour "c".
    assert [p.teams for p in propose_matches(tickets, DUEL, now=0)] == [(("a",), ("c",))]


def test_parties_stay_whole_in_five_versus_five():
    rules = MatchRules(team_size=5, teams=2, mmr_window=100, mmr_window_growth_per_s=0, mmr_window_max=100)
    tickets = [
        ticket("p3", 1500, size=3), ticket("p2", 1520, size=2), ticket("q4", 1490, size=4),
        ticket("s1", 1510), ticket("s2", 1480),
    ]
    (proposal,) = propose_matches(tickets, rules, now=0)
    check_proposals([proposal], tickets, rules, 0)
    teams = sorted(sorted(team) for team in proposal.teams)
    assert teams in (
        [["p2", "p3"], ["q4", "s1"]], [["p2", "p3"], ["q4", "s2"]],
    )


def test_a_one_sided_set_is_found_when_the_nearest_tickets_spread_too_wide():
    rules = MatchRules(team_size=2, teams=2, mmr_window=100, mmr_window_growth_per_s=0, mmr_window_max=100)
    tickets = [
        ticket("anchor", 100, enqueued_at=0), ticket("low", 20, enqueued_at=2),
        ticket("h1", 185, enqueued_at=1), ticket("h2", 190, enqueued_at=2), ticket("h3", 195, enqueued_at=2),
        ticket("h4", 230, enqueued_at=2),  # h1 would take it, were the anchor skipped
        ticket("party", 5000, enqueued_at=2, size=2),  # forces the party search
    ]
    # The four nearest (low, h1, h2, anchor) spread 170; the anchor with h1-h3 spreads 95.
    (proposal,) = propose_matches(tickets, rules, now=2)
    assert sorted(i for team in proposal.teams for i in team) == ["anchor", "h1", "h2", "h3"]
    assert proposal.mmr_spread == 95


def test_sizes_that_can_never_fill_a_match_produce_nothing():
    rules = MatchRules(team_size=5, teams=2, mmr_window=100, mmr_window_growth_per_s=0, mmr_window_max=100)
    tickets = [ticket(f"f{i}", 1000 + i, size=4) for i in range(50)]
    assert propose_matches(tickets, rules, now=0) == []


def test_a_plain_mode_names_players_when_the_party_sizes_cannot_fill_the_teams():
    # 3v3, four parties of 2 at one MMR: 8 players, but no mix of 2s fills a team of 3. The
    # MMR window is not what keeps them waiting.
    rules = MatchRules(team_size=3, teams=2, mmr_window=1000, mmr_window_growth_per_s=0, mmr_window_max=1000)
    pairs = [ticket(f"p{i}", 1500, size=2) for i in range(4)]
    matching = match_queue(pairs, rules, now=10)
    assert matching.proposals == []
    assert matching.blocked == {f"p{i}": "players" for i in range(4)}
    # Two solos far off in MMR: the sizes now fit (2 + 1 a team), the window does not.
    far = [ticket("s0", 3000), ticket("s1", 3000)]
    matching = match_queue(pairs + far, rules, now=10)
    assert matching.proposals == []
    assert set(matching.blocked.values()) == {"mmr"}
    # Parties of 3 fill a team each; the parties of 2 have no partner of size 1 for theirs.
    rules = MatchRules(team_size=3, teams=2, mmr_window=10, mmr_window_growth_per_s=0, mmr_window_max=10)
    triples = [ticket("a", 1000, size=3), ticket("b", 2000, size=3)]
    matching = match_queue(triples + pairs, rules, now=10)
    assert matching.blocked == {"a": "mmr", "b": "mmr", **{f"p{i}": "players" for i in range(4)}}


@FAST
@given(queues(max_tickets=8))
def test_a_plain_mode_names_mmr_only_when_the_waiting_sizes_make_a_match(case):
    """Brute force over the unmatched tickets, MMRs ignored: "mmr" exactly when some of them
    with the ticket fill every team; otherwise "players"."""
    rules, tickets = case
    matching = match_queue(tickets, rules, NOW - 960)
    matched = {x for p in matching.proposals for team in p.teams for x in team}
    waiting = [t for t in tickets if t.ticket_id not in matched]
    assert set(matching.blocked) == {t.ticket_id for t in waiting}
    need = rules.team_size * rules.teams
    for t in waiting:
        others = [u.size for u in waiting if u is not t]
        fits = any(packs([t.size, *group], rules.team_size, rules.teams)
                   for count in range(need) for group in itertools.combinations(others, count)
                   if t.size + sum(group) == need)
        assert matching.blocked[t.ticket_id] == ("mmr" if fits else "players")


def test_a_ticket_larger_than_a_team_is_left_out():
    tickets = [ticket("big", 1000, size=2), ticket("a", 1000), ticket("b", 1001)]
    assert [p.teams for p in propose_matches(tickets, DUEL, now=0)] == [(("a",), ("b",))]


def test_rules_come_from_the_mode_configuration():
    mode = ModeConfig(name="squads", team_size=4, teams=3, mmr_window=50,
                      mmr_window_growth_per_s=2.5, mmr_window_max=400)
    assert MatchRules.from_mode(mode) == MatchRules(4, 3, 50.0, 2.5, 400.0)


@pytest.mark.parametrize("bad", [dict(team_size=0), dict(teams=0), dict(mmr_window=-1.0),
                                 dict(mmr_window_max=float("inf")), dict(min_team_size=2),
                                 dict(roles=(("tank", 2),))])
def test_impossible_rules_are_refused(bad):
    values = dict(team_size=1, teams=2, mmr_window=100.0, mmr_window_growth_per_s=20.0, mmr_window_max=1000.0)
    with pytest.raises(ValueError):
        MatchRules(**{**values, **bad})


@pytest.mark.parametrize("team_size,sizes,weights", [(1, [1], [1]), (5, [1], [1]), (5, [1, 2, 3, 4, 5], [70, 15, 8, 4, 3])])
def test_a_big_random_queue_obeys_the_rules(team_size, sizes, weights):
    rnd = random.Random(team_size * 7 + len(sizes))
    rules = MatchRules(team_size=team_size, teams=2, mmr_window=100, mmr_window_growth_per_s=20, mmr_window_max=1000)
    tickets = [
        QueuedTicket(f"t{i}", rnd.uniform(0, 3000), rnd.choices(sizes, weights)[0], rnd.uniform(0, 60))
        for i in range(3000)
    ]
    proposals = propose_matches(tickets, rules, now=60)
    check_proposals(proposals, tickets, rules, 60)
    matched = sum(len(team) for p in proposals for team in p.teams)
    assert matched > 0.9 * len(tickets)  # a dense queue is almost entirely matched
