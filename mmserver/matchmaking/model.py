"""What the matcher takes in and hands back: plain values, no I/O (treated as read-only)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Union

# An attribute's value, by its declared type: "string" -> str, "number" -> float,
# "string_list" -> tuple of str.
AttributeValue = Union[str, float, tuple]


class _Nothing(Mapping):
    """The empty read-only mapping the fields below default to. Hashable, so a dataclass takes
    it as a plain default: a default_factory would cost a call per ticket, and the store builds
    every queued ticket of a queue at every tick."""

    __slots__ = ()

    def __getitem__(self, key):
        raise KeyError(key)

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"


NO_ATTRIBUTES: Mapping[str, AttributeValue] = _Nothing()
NO_LATENCIES: Mapping[str, float] = NO_ATTRIBUTES  # type: ignore[assignment]


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which doubles the
# cost of building one (the store builds every queued ticket of a queue at every tick). Treat
# it as read-only all the same; unsafe_hash keeps it hashable as a frozen one would be.
@dataclass(slots=True, unsafe_hash=True)
class QueuedTicket:
    """One queued ticket as the matcher sees it.

    A party is one ticket: `mmr` is the party's mean MMR (the caller computes it) and `size`
    counts every player on it (1 + party members). Parties always play on one team.

    The fields after `enqueued_at` matter only to modes that declare them:
    - `attributes`: declared attribute name -> value (str, float or tuple of str);
    - `latencies`: region -> measured round trip in ms (regions missing are unreachable);
    - `region`: a fixed region (the ticket sent `region`, not latencies): it plays only there;
    - `roles`: one tuple of offered roles per player, owner first, then party members in the
      order of `players`; empty: every player takes any role;
    - `players`: the player ids, owner first (for match functions and rosters).
    """

    ticket_id: str
    mmr: float
    size: int  # 1 <= size <= team_size; larger tickets can never be placed and are ignored
    enqueued_at: float  # Unix seconds; earlier = waited longer = served first
    attributes: Mapping[str, AttributeValue] = NO_ATTRIBUTES
    latencies: Mapping[str, float] = NO_LATENCIES
    region: str | None = None
    roles: tuple[tuple[str, ...], ...] = ()
    players: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Proposal:
    """A match the caller may form: ticket ids per team, and the MMR spread of all its tickets.

    Modes with rules also say where and how: `region` (chosen by latency, None when the queue's
    own region applies), `roles` (ticket id -> the role of each of its players, in the
    ticket's player order) and `attributes` (rule-chosen values, e.g. the common map of an
    `overlap` rule: attribute name -> value).
    """

    teams: tuple[tuple[str, ...], ...]
    mmr_spread: float
    region: str | None = None
    roles: Mapping[str, tuple[str, ...]] = NO_ATTRIBUTES  # type: ignore[assignment]
    attributes: Mapping[str, str] = NO_ATTRIBUTES  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Matching:
    """One matcher call's result: the proposals, and for every eligible ticket left unmatched
    the name of what kept it waiting (a rule's `name`, "mmr" for the MMR window, "latency",
    "roles" or "players")."""

    proposals: list[Proposal]
    blocked: dict[str, str]
