"""Backfill: filling the open places of running matches from a queue (pure: no Redis, no HTTP).

`plan_backfills(backfills, tickets, rules, now, queue_region)` says which queued tickets go
into which open backfill; the store then fills each one atomically (fill.lua re-checks that
the ticket is still queued and the slot still open). docs/BACKFILL.md is the user's view.

What a ticket must satisfy to join a match, with the limits in force for the ticket's own wait
(it is the one waiting; the match formed under its own limits long ago):
- eligible at all: 1 <= size <= team_size, and `roles` empty or one tuple per player;
- region: a mode without a latency rule has a queue per region, so only backfills of the
  match's region are served from a queue (`queue_region`); a latency mode's ticket plays in
  the match's region: its fixed region is that region, or its latency there is at most the
  ceiling in force;
- MMR: |ticket MMR - the match's mean MMR| <= window(wait) / 2. The mean is over the players
  still in the match (a party's MMR counts once per player); half the window, because a
  match's window bounds its whole spread and the mean sits inside it;
- `same` rules: the ticket's value equals the match's players' value;
- `overlap` rules: the ticket's list holds the value the match chose (or, for a match that
  recorded none, shares a value with every player's list);
- `distance` rules (MMR too when a rule names it): the spread of the match with the ticket is
  at most the rule's limit, or at most the match's own spread (a ticket inside the match's
  range never widens it, so a match formed under a wider limit can still be refilled);
- roles: every player of the ticket takes one slot whose role it offers (a ticket offering
  none takes any), all in one team: a party stays whole on one team, within the backfill.

Order and bounds: backfills oldest first; for each, among the unused tickets of the queue
that share the match's `same` values and are closest in MMR to the match's mean (at most
`scan` of them, within the widest window the mode allows, walking at most 4 * scan tickets),
the oldest that pass. Each call costs O(T log T + B * scan log scan) for T queued tickets and
B backfills, whatever the queue holds.
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from mmserver.matchmaking.model import NO_ATTRIBUTES, AttributeValue, QueuedTicket
from mmserver.matchmaking.rules import MMR_RULE, MatchRules, window

DEFAULT_SCAN = 256  # tickets looked at per backfill and call


@dataclass(frozen=True, slots=True)
class Slot:
    """`count` open places in team `team` (0-based), for `role` in a mode with roles."""

    team: int
    count: int
    role: str | None = None


@dataclass(frozen=True, slots=True)
class Rostered:
    """A ticket on a match's roster: its team, MMR, players still there, attributes."""

    team: int
    mmr: float
    size: int
    attributes: Mapping[str, AttributeValue] = NO_ATTRIBUTES


@dataclass(frozen=True, slots=True)
class OpenBackfill:
    backfill_id: str
    match_id: str
    region: str | None  # the match's region (None: a match without one)
    created_at: float
    expires_at: float
    slots: tuple[Slot, ...]
    roster: tuple[Rostered, ...]
    chosen: Mapping[str, str] = NO_ATTRIBUTES  # overlap rules' values: attribute -> value


@dataclass(frozen=True, slots=True)
class Fill:
    """Ticket `ticket_id` joins team `team` of the match through backfill `backfill_id`;
    `roles`: one per player of the ticket, in its player order (() in a mode without roles)."""

    backfill_id: str
    match_id: str
    ticket_id: str
    team: int
    roles: tuple[str, ...] = ()


@dataclass
class _Match:
    """What the rules compare a ticket with, kept up to date as fills are planned (two
    backfills of one match in one call see each other's players)."""

    players: int = 0
    mmr_sum: float = 0.0
    same: dict = field(default_factory=dict)  # attribute -> the match's value
    ranges: dict = field(default_factory=dict)  # attribute -> (lowest, highest)
    lists: dict = field(default_factory=dict)  # overlap attribute -> values every player holds

    @property
    def mean(self) -> float | None:
        return self.mmr_sum / self.players if self.players else None


def _value(attributes: Mapping[str, AttributeValue], mmr: float, attribute: str):
    if attribute == MMR_RULE:
        return mmr
    return attributes.get(attribute)


def _number(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _join(match: _Match, rules: MatchRules, mmr: float, size: int,
          attributes: Mapping[str, AttributeValue]) -> None:
    match.players += size
    match.mmr_sum += mmr * size
    for rule in rules.rules:
        value = _value(attributes, mmr, rule.attribute)
        if value is None:
            continue
        if rule.kind == "same":
            match.same.setdefault(rule.attribute, value)
        elif rule.kind == "distance":
            number = _number(value)
            if number is not None:
                low, high = match.ranges.get(rule.attribute, (number, number))
                match.ranges[rule.attribute] = (min(low, number), max(high, number))
        elif rule.kind == "overlap" and isinstance(value, tuple):
            held = match.lists.get(rule.attribute)
            match.lists[rule.attribute] = set(value) if held is None else held & set(value)


def _context(backfill: OpenBackfill, rules: MatchRules) -> _Match:
    match = _Match()
    for entry in backfill.roster:
        if entry.size > 0:
            _join(match, rules, entry.mmr, entry.size, entry.attributes)
    return match


def _admits(match: _Match, backfill: OpenBackfill, rules: MatchRules, ticket: QueuedTicket,
            waited: float) -> bool:
    if rules.latency is not None and backfill.region is not None:
        if ticket.region is not None:
            if ticket.region != backfill.region:
                return False
        else:
            latency = ticket.latencies.get(backfill.region)
            if latency is None or latency > rules.latency.limit(waited):
                return False
    mean = match.mean
    if mean is not None and abs(ticket.mmr - mean) > window(rules, waited) / 2:
        return False
    for rule in rules.rules:
        value = _value(ticket.attributes, ticket.mmr, rule.attribute)
        if value is None:
            return False  # a ticket lacking what a rule reads never satisfies it
        if rule.kind == "same":
            if rule.attribute in match.same and match.same[rule.attribute] != value:
                return False
        elif rule.kind == "overlap":
            if not isinstance(value, tuple):
                return False
            chosen = backfill.chosen.get(rule.attribute)
            if chosen is not None:
                if chosen not in value:
                    return False
            else:
                held = match.lists.get(rule.attribute)
                if held is not None and not held.intersection(value):
                    return False
        elif rule.kind == "distance":
            number = _number(value)
            if number is None:
                return False
            if rule.attribute in match.ranges:
                low, high = match.ranges[rule.attribute]
                spread = max(high, number) - min(low, number)
                if spread > max(rule.limit(waited), high - low):
                    return False
    return True


def _eligible(ticket: QueuedTicket, rules: MatchRules) -> bool:
    return 1 <= ticket.size <= rules.team_size and (not ticket.roles or len(ticket.roles) == ticket.size)


def assign_roles(offered: Sequence[Sequence[str]], size: int, free: Mapping[str, int],
                 all_roles: Iterable[str]) -> tuple[str, ...] | None:
    """One role per player (in order) among the roles it offers, within `free` (role -> open
    places); `offered` empty: every player takes any role. None when no assignment exists."""
    choices = [tuple(offered[i]) if offered else tuple(all_roles) for i in range(size)]
    left = dict(free)
    picked: list[str] = []

    def place(i: int) -> bool:
        if i == size:
            return True
        for role in choices[i]:
            if left.get(role, 0) > 0:
                left[role] -= 1
                picked.append(role)
                if place(i + 1):
                    return True
                picked.pop()
                left[role] += 1
        return False

    return tuple(picked) if place(0) else None


def _nearest(by_mmr: list[QueuedTicket], mmrs: list[float], mean: float | None, reach: float,
             used: set[str], scan: int, largest: int) -> list[QueuedTicket]:
    """Up to `scan` unused tickets of at most `largest` players within `reach` of `mean` (any
    MMR when the match has no player left), nearest first, then ordered oldest first. Tickets
    too big for every team's open places are not even counted against `scan`."""
    found: list[QueuedTicket] = []
    if mean is None:
        found = [t for t in by_mmr if t.ticket_id not in used and t.size <= largest]
        found.sort(key=lambda t: (t.enqueued_at, t.ticket_id))
        return found[:scan]
    right = bisect_left(mmrs, mean)
    left = right - 1
    # Skipped tickets (used, or too big) count against a walk bound, so a queue full of them
    # costs at most 4 * scan steps per backfill, not the whole queue.
    for _step in range(4 * scan):
        if len(found) >= scan:
            break
        go_left = left >= 0 and mean - mmrs[left] <= reach
        go_right = right < len(mmrs) and mmrs[right] - mean <= reach
        if not go_left and not go_right:
            break
        if go_left and (not go_right or mean - mmrs[left] <= mmrs[right] - mean):
            ticket = by_mmr[left]
            left -= 1
        else:
            ticket = by_mmr[right]
            right += 1
        if ticket.ticket_id not in used and ticket.size <= largest:
            found.append(ticket)
    found.sort(key=lambda t: (t.enqueued_at, t.ticket_id))
    return found


def plan_backfills(backfills: Sequence[OpenBackfill], tickets: Sequence[QueuedTicket], rules: MatchRules,
                   now: float, queue_region: str | None = None, *, scan: int = DEFAULT_SCAN) -> list[Fill]:
    """The fills to attempt, oldest backfill first; each ticket in at most one fill."""
    if not backfills or not tickets:
        return []
    # Tickets by the values of the `same` rules (a match takes only its own values), each group
    # in MMR order; a match that has no value yet (no player left) looks at every ticket.
    same = [rule.attribute for rule in rules.rules if rule.kind == "same"]
    eligible = sorted((t for t in tickets if _eligible(t, rules)), key=lambda t: t.mmr)
    groups: dict[tuple, list[QueuedTicket]] = {}
    if same:
        for ticket in eligible:
            key = tuple(ticket.attributes.get(attribute) for attribute in same)
            if None not in key:
                groups.setdefault(key, []).append(ticket)
    by_key = {key: (group, [t.mmr for t in group]) for key, group in groups.items()}
    everyone = (eligible, [t.mmr for t in eligible])
    reach = rules.mmr_window_max / 2  # the widest window any wait can reach
    role_names = [role for role, _count in rules.roles]
    used: set[str] = set()
    matches: dict[str, _Match] = {}
    fills: list[Fill] = []
    for backfill in sorted(backfills, key=lambda b: (b.created_at, b.backfill_id)):
        if backfill.expires_at <= now:
            continue
        if rules.latency is None and (backfill.region or None) != (queue_region or None):
            continue  # another region's queue serves it
        match = matches.get(backfill.match_id)
        if match is None:
            match = matches[backfill.match_id] = _context(backfill, rules)
        # Open places: team -> role (None without roles) -> count.
        free: dict[int, dict] = {}
        for slot in backfill.slots:
            if slot.count > 0 and 0 <= slot.team < rules.teams:
                roles = free.setdefault(slot.team, {})
                roles[slot.role] = roles.get(slot.role, 0) + slot.count
        if not free:
            continue
        largest = max(sum(places.values()) for places in free.values())
        key = tuple(match.same.get(attribute) for attribute in same)
        by_mmr, mmrs = by_key.get(key, ([], [])) if same and None not in key else everyone
        for ticket in _nearest(by_mmr, mmrs, match.mean, reach, used, scan, largest):
            if not free:
                break
            waited = max(0.0, now - ticket.enqueued_at)
            if not _admits(match, backfill, rules, ticket, waited):
                continue
            for team in sorted(free):
                places = free[team]
                if rules.roles:
                    roles = assign_roles(ticket.roles, ticket.size,
                                         {r: n for r, n in places.items() if r is not None}, role_names)
                    if roles is None:
                        continue
                    for role in roles:
                        places[role] -= 1
                else:
                    if places.get(None, 0) < ticket.size:
                        continue
                    places[None] -= ticket.size
                    roles = ()
                for role in [r for r, n in places.items() if n <= 0]:
                    del places[role]
                if not places:
                    del free[team]
                fills.append(Fill(backfill.backfill_id, backfill.match_id, ticket.ticket_id, team, roles))
                used.add(ticket.ticket_id)
                _join(match, rules, ticket.mmr, ticket.size, ticket.attributes)
                break
    return fills
