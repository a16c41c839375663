"""What the matcher takes in and hands back: plain frozen values, no I/O."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QueuedTicket:
    """One queued ticket as the matcher sees it.

    A party is one ticket: `mmr` is the party's mean MMR (the caller computes it) and `size`
    counts every player on it (1 + party members). Parties always play on one team.
    """

    ticket_id: str
    mmr: float
    size: int  # 1 <= size <= team_size; larger tickets can never be placed and are ignored
    enqueued_at: float  # Unix seconds; earlier = waited longer = served first


@dataclass(frozen=True, slots=True)
class Proposal:
    """A match the caller may form: ticket ids per team, and the MMR spread of all its tickets."""

    teams: tuple[tuple[str, ...], ...]
    mmr_spread: float
