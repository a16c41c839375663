"""Matching rules of one mode: team shape, MMR window, declared rules, roles, latency.

Pure values: the configuration builds them (config/modes.py), the matcher reads them. Expansions are
step schedules keyed on the oldest ticket's wait: the value of the last step whose `after_s`
has passed is in force, the base value before the first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # config imports this module: no import cycle at run time
    from mmserver.config import ModeConfig

RULE_KINDS = ("same", "overlap", "distance")
ATTRIBUTE_TYPES = ("string", "number", "string_list")
MMR_RULE = "mmr"  # the name `blocked_by` gives the mmr_window* rule; also the ticket's MMR as an attribute


@dataclass(frozen=True, slots=True)
class Step:
    """From `after_s` seconds of the oldest ticket's wait on, the limit is `value`."""

    after_s: float
    value: float


def expanded(base: float, steps: Sequence[Step], waited_s: float) -> float:
    """The limit in force after `waited_s`: the last step reached, else `base` (steps sorted)."""
    value = base
    for step in steps:
        if waited_s >= step.after_s:
            value = step.value
        else:
            break
    return value


@dataclass(frozen=True, slots=True)
class Rule:
    """A declared rule: `same` (every player the same value), `overlap` (the string lists
    share a value; the match records the one chosen), `distance` (largest minus smallest
    value at most `max`; attribute "mmr" is the ticket's MMR)."""

    name: str
    kind: str
    attribute: str
    max: float = 0.0  # distance only
    expand: tuple[Step, ...] = ()  # distance only

    def limit(self, waited_s: float) -> float:
        return expanded(self.max, self.expand, waited_s)


@dataclass(frozen=True, slots=True)
class Latency:
    """A match's region: one where every player's latency is at most `max_ms` (expanding)."""

    max_ms: float
    expand: tuple[Step, ...] = ()

    def limit(self, waited_s: float) -> float:
        return expanded(self.max_ms, self.expand, waited_s)


@dataclass(frozen=True, slots=True)
class MatchRules:
    team_size: int  # players per team; with min_team_size, the largest team
    teams: int
    mmr_window: float
    mmr_window_growth_per_s: float
    mmr_window_max: float
    min_team_size: int | None = None  # None: exactly team_size
    fill_wait_s: float = 0.0  # the oldest ticket's wait before teams below team_size may form
    roles: tuple[tuple[str, int], ...] = ()  # per team: (role, count), counts adding to team_size
    rules: tuple[Rule, ...] = ()
    latency: Latency | None = None
    regions: tuple[str, ...] = ()  # [regions] names: where latency-chosen matches may go

    def __post_init__(self) -> None:
        # The configuration file already refuses these; checking again keeps the matcher's
        # loops (which rely on finite windows and whole teams) safe for any other caller.
        if self.team_size < 1 or self.teams < 1:
            raise ValueError(f"need team_size >= 1 and teams >= 1, got {self.team_size} and {self.teams}")
        if self.min_team_size is not None and not 1 <= self.min_team_size <= self.team_size:
            raise ValueError(f"need 1 <= min_team_size <= team_size, got {self.min_team_size}")
        for name in ("mmr_window", "mmr_window_growth_per_s", "mmr_window_max", "fill_wait_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.roles and sum(count for _, count in self.roles) != self.team_size:
            raise ValueError("role counts must add up to team_size")

    @property
    def players_per_match(self) -> int:
        return self.team_size * self.teams

    @property
    def smallest_team(self) -> int:
        return self.team_size if self.min_team_size is None else self.min_team_size

    @property
    def plain(self) -> bool:
        """Fixed team sizes, two teams or more, and nothing but the MMR window: the fast
        searches of matcher.py apply."""
        return (self.teams >= 2 and self.min_team_size in (None, self.team_size) and not self.roles
                and not self.rules and self.latency is None)

    @classmethod
    def from_mode(cls, mode: "ModeConfig", regions: Sequence[str] = ()) -> "MatchRules":
        return cls(
            team_size=mode.team_size,
            teams=mode.teams,
            mmr_window=mode.mmr_window,
            mmr_window_growth_per_s=mode.mmr_window_growth_per_s,
            mmr_window_max=mode.mmr_window_max,
            min_team_size=mode.min_team_size,
            fill_wait_s=mode.fill_wait_s,
            roles=mode.roles,
            rules=mode.rules,
            latency=mode.latency,
            regions=tuple(regions),
        )


def window(rules: MatchRules, waited_s: float) -> float:
    """Largest MMR spread allowed in a match whose oldest ticket has waited `waited_s` seconds."""
    return min(rules.mmr_window_max, rules.mmr_window + rules.mmr_window_growth_per_s * max(0.0, waited_s))


def limits_in_force(rules: MatchRules, waited_s: float) -> dict:
    """What a ticket that has waited `waited_s` may be matched under, as its view shows it:
    the MMR window, the latency ceiling (ms, modes with a latency rule) and each distance
    rule's limit by the rule's name."""
    limits: dict = {"mmr_window": window(rules, waited_s)}
    if rules.latency is not None:
        limits["latency_ms"] = rules.latency.limit(waited_s)
    distances = {rule.name: rule.limit(waited_s) for rule in rules.rules if rule.kind == "distance"}
    if distances:
        limits["rules"] = distances
    return limits
