"""Matching rules of one mode and the widening MMR window."""
from __future__ import annotations

import math
from dataclasses import dataclass

from mmserver.config import ModeConfig


@dataclass(frozen=True, slots=True)
class MatchRules:
    team_size: int
    teams: int
    mmr_window: float
    mmr_window_growth_per_s: float
    mmr_window_max: float

    def __post_init__(self) -> None:
        # The configuration file already refuses these; checking again keeps the matcher's
        # loops (which rely on finite windows and whole teams) safe for any other caller.
        if self.team_size < 1 or self.teams < 2:
            raise ValueError(f"need team_size >= 1 and teams >= 2, got {self.team_size} and {self.teams}")
        for name in ("mmr_window", "mmr_window_growth_per_s", "mmr_window_max"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    @property
    def players_per_match(self) -> int:
        return self.team_size * self.teams

    @classmethod
    def from_mode(cls, mode: ModeConfig) -> "MatchRules":
        return cls(
            team_size=mode.team_size,
            teams=mode.teams,
            mmr_window=mode.mmr_window,
            mmr_window_growth_per_s=mode.mmr_window_growth_per_s,
            mmr_window_max=mode.mmr_window_max,
        )


def window(rules: MatchRules, waited_s: float) -> float:
    """Largest MMR spread allowed in a match whose oldest ticket has waited `waited_s` seconds."""
    return min(rules.mmr_window_max, rules.mmr_window + rules.mmr_window_growth_per_s * max(0.0, waited_s))
