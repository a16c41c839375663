"""Fitting whole parties into teams of exactly `team_size` players.

Parties are never split, so choosing tickets for a match is a small bin-packing problem:
`teams` bins of capacity `team_size`, each filled exactly. Two questions are asked:

- `find_composition`: given how many tickets of each size are at hand, which sizes (how many of
  each) make a whole match that includes the anchor's ticket? The answer depends only on the
  counts, so the matcher memoises it by counts.
- `pack`: given the exact tickets of a match, which team does each go to?

Both are exact depth-first searches (never a wrong answer); they memoise failed states, and
sizes are small integers, so they are quick for real team sizes.
"""
from __future__ import annotations

from typing import Sequence


def find_composition(
    counts: Sequence[int], anchor_size: int, team_size: int, teams: int
) -> tuple[int, ...] | None:
    """Counts per size (index = party size) of a full match drawn from `counts`, or None.

    `counts[s]` tickets of size s are available, the anchor's ticket among them; the result uses
    at most that many of each size, at least one of `anchor_size`, and packs exactly into
    `teams` teams of `team_size`. Larger parties are tried first: they are the hardest to place.
    """
    if not 1 <= anchor_size <= team_size or counts[anchor_size] < 1:
        return None
    available = list(counts)
    used = [0] * len(counts)
    # Teams are interchangeable, so the anchor goes to the first one.
    available[anchor_size] -= 1
    used[anchor_size] = 1
    failed: set[tuple] = set()

    def fill(teams_left: int, room: int, largest: int) -> bool:
        # Fill the current team with parts in non-increasing order (one order per multiset),
        # then the next team; `teams_left` counts the teams after the current one.
        if room == 0:
            if teams_left == 0:
                return True
            return fill(teams_left - 1, team_size, team_size)
        state = (tuple(available), teams_left, room, largest)
        if state in failed:
            return False
        for size in range(min(room, largest), 0, -1):
            if available[size]:
                available[size] -= 1
                used[size] += 1
                if fill(teams_left, room - size, size):
                    return True
                available[size] += 1
                used[size] -= 1
        failed.add(state)
        return False

    if fill(teams - 1, team_size - anchor_size, team_size):
        return tuple(used)
    return None


def pack(sizes: Sequence[int], team_size: int, teams: int) -> list[int] | None:
    """A team index for each ticket so that every team holds exactly `team_size` players."""
    if sum(sizes) != team_size * teams or any(not 1 <= s <= team_size for s in sizes):
        return None
    order = sorted(range(len(sizes)), key=sizes.__getitem__, reverse=True)
    room = [team_size] * teams
    team_of = [0] * len(sizes)
    failed: set[tuple] = set()

    def place(k: int) -> bool:
        if k == len(order):
            return True
        state = (k, tuple(sorted(room)))
        if state in failed:
            return False
        item = order[k]
        size = sizes[item]
        tried = set()
        for team in range(teams):
            # Teams with the same room left are interchangeable: try one of them.
            if room[team] >= size and room[team] not in tried:
                tried.add(room[team])
                room[team] -= size
                team_of[item] = team
                if place(k + 1):
                    return True
                room[team] += size
        failed.add(state)
        return False

    return team_of if place(0) else None
