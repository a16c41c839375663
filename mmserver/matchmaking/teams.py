"""Splitting the chosen tickets of a match into balanced teams.

"Balanced" means the team MMR sums (a ticket counts mmr x size) are close. What is guaranteed:

- every team holds exactly `team_size` players and no party is split;
- for two teams of at most two solo players each (1v1, 2v2) the difference of the sums is the
  smallest possible for the chosen tickets;
- in every case the result is a local optimum: no exchange of two tickets of the same size
  between two teams brings those teams' sums closer together.

How: tickets are placed by mmr x size, largest first, each into the team with the lowest sum
that still has room for it (for two teams of solos this is the classic largest-first greedy).
Should that leave a party without room, an exact packing (packing.pack) is used instead. Then
same-size exchanges are applied, best first, while one still reduces the sum of squared team
sums. Exchanges between a party and several smaller tickets are not attempted.
"""
from __future__ import annotations

from typing import Sequence

from mmserver.matchmaking.packing import pack

_MAX_ROUNDS = 64  # each round strictly improves, this only bounds float edge cases


def balance(mmrs: Sequence[float], sizes: Sequence[int], team_size: int, teams: int) -> list[list[int]]:
    """Indexes of the tickets on each team. The sizes must add up to `team_size * teams`."""
    members = _greedy(mmrs, sizes, team_size, teams)
    if members is None:
        team_of = pack(sizes, team_size, teams)
        if team_of is None:
            raise ValueError(f"sizes {sorted(sizes)} do not fill {teams} teams of {team_size}")
        members = [[] for _ in range(teams)]
        for item, team in enumerate(team_of):
            members[team].append(item)
    _improve(members, mmrs, sizes)
    return members


def _greedy(mmrs: Sequence[float], sizes: Sequence[int], team_size: int, teams: int) -> list[list[int]] | None:
    weights = [m * s for m, s in zip(mmrs, sizes)]
    order = sorted(range(len(weights)), key=weights.__getitem__, reverse=True)
    members: list[list[int]] = [[] for _ in range(teams)]
    sums = [0.0] * teams
    room = [team_size] * teams
    for item in order:
        size = sizes[item]
        best = -1
        for team in range(teams):
            if room[team] >= size and (best < 0 or sums[team] < sums[best]):
                best = team
        if best < 0:
            return None
        members[best].append(item)
        sums[best] += weights[item]
        room[best] -= size
    return members


def _improve(members: list[list[int]], mmrs: Sequence[float], sizes: Sequence[int]) -> None:
    teams = len(members)
    sums = [sum(mmrs[i] * sizes[i] for i in team) for team in members]
    for _ in range(_MAX_ROUNDS):
        best_gain = 0.0
        best = None
        for a in range(teams):
            for b in range(teams):
                gap = sums[a] - sums[b]
                if gap <= 0:
                    continue
                # Moving x (team a) and y (team b) across shifts d = (mmr_x - mmr_y) * size from
                # a to b; the sum of squares drops by 2d(gap - d), best for d near gap / 2.
                for x in members[a]:
                    size = sizes[x]
                    mx = mmrs[x]
                    for y in members[b]:
                        if sizes[y] == size:
                            d = (mx - mmrs[y]) * size
                            if 0 < d < gap:
                                gain = d * (gap - d)
                                if gain > best_gain:
                                    best_gain = gain
                                    best = (a, b, x, y, d)
        if best is None:
            return
        a, b, x, y, d = best
        members[a][members[a].index(x)] = y
        members[b][members[b].index(y)] = x
        sums[a] -= d
        sums[b] += d
