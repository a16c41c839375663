"""Party packing and team balancing, checked against brute force."""
from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from mmserver.matchmaking.packing import find_composition, pack
from mmserver.matchmaking.teams import balance
from tests.unit.test_matcher import packs  # the brute-force reference

FAST = settings(max_examples=200, deadline=None)


shapes = st.sampled_from([(1, 2), (1, 3), (2, 2), (2, 3), (3, 2), (4, 2), (5, 2)])


@FAST
@given(shapes, st.data())
def test_a_composition_is_found_exactly_when_one_exists(shape, data):
    team_size, teams = shape
    counts = [0] + [data.draw(st.integers(0, 4)) for _ in range(team_size)]
    anchor_size = data.draw(st.integers(1, team_size))
    counts[anchor_size] = max(counts[anchor_size], 1)
    found = find_composition(counts, anchor_size, team_size, teams)
    exists = any(
        choice[anchor_size] >= 1
        and packs([s for s in range(1, team_size + 1) for _ in range(choice[s])], team_size, teams)
        for choice in ([0, *rest] for rest in itertools.product(*(range(c + 1) for c in counts[1:])))
    )
    assert (found is not None) == exists
    if found is not None:
        assert found[anchor_size] >= 1
        assert all(0 <= f <= c for f, c in zip(found, counts))
        assert packs([s for s in range(1, team_size + 1) for _ in range(found[s])], team_size, teams)


@FAST
@given(shapes, st.data())
def test_pack_fills_every_team_exactly_or_says_it_cannot(shape, data):
    team_size, teams = shape
    sizes = data.draw(st.lists(st.integers(1, team_size), max_size=team_size * teams))
    team_of = pack(sizes, team_size, teams)
    assert (team_of is not None) == packs(sizes, team_size, teams)
    if team_of is not None:
        totals = [0] * teams
        for size, team in zip(sizes, team_of):
            totals[team] += size
        assert totals == [team_size] * teams


def test_balance_falls_back_to_an_exact_packing_when_greedy_gets_stuck():
    # Largest mmr x size first sends the three pairs to alternate teams, leaving no team room
    # for the second trio: only {3, 3} / {2, 2, 2} works.
    mmrs = [2000.0, 1900.0, 1800.0, 100.0, 100.0]
    sizes = [2, 2, 2, 3, 3]
    split = balance(mmrs, sizes, team_size=6, teams=2)
    assert sorted(sorted(sizes[i] for i in team) for team in split) == [[2, 2, 2], [3, 3]]


def test_balance_evens_out_two_teams_of_solos():
    mmrs = [1000.0, 1010.0, 1020.0, 1030.0, 1040.0, 1050.0]
    split = balance(mmrs, [1] * 6, team_size=3, teams=2)
    sums = [sum(mmrs[i] for i in team) for team in split]
    assert sorted(len(team) for team in split) == [3, 3]
    assert abs(sums[0] - sums[1]) == 10.0  # 3030 vs 3040 is the best split of these six


def test_balance_keeps_a_full_party_against_solos():
    mmrs = [1500.0, 1400.0, 1600.0, 1450.0, 1550.0, 1500.0]
    sizes = [5, 1, 1, 1, 1, 1]
    split = balance(mmrs, sizes, team_size=5, teams=2)
    assert sorted(len(team) for team in split) == [1, 5]
