"""Team shapes and roles for the matcher of modes with rules (constrained.py).

Given the tickets of a candidate match, two questions:

- `fits(keys, lo)`: can these tickets form `teams` teams, each of `lo`..`team_size` players
  (parties whole), and with roles each team's role counts filled (role counts cap every team,
  so a set that is not yet a whole match "fits" when it could still be completed)? The answer
  depends only on the multiset of ticket keys (size, and with roles the sorted role masks of
  the players), so it is memoised by that multiset.
- `arrange(items, lo)`: the actual teams (and roles) for a chosen match, balanced by MMR.

Roles: each player offers a set of roles (a bit mask over the mode's roles; a ticket without
roles offers every role). Parties are placed by an exact depth-first search (team, and a role
for every member); the solo tickets that remain only need roles, not teams, so they are
checked at once over all teams with Hall's condition (for every set R of roles, the solos
whose offers lie within R are no more than the free slots of R; beyond _SUBSETS_MAX_ROLES
roles, by augmenting paths instead of set by set) and assigned by augmenting paths. Teams are
then balanced by MMR sums by exchanging tickets of the same size and the same assigned roles
between teams, which keeps every team's role counts. The party search spends steps of the
caller's `allowance`; fits() answers None (undecided) when they run out.

Without roles, team shapes are a bin packing: `teams` bins of `lo`..`team_size` players. A full
match of equal teams is split by teams.balance, as in plain modes; otherwise the smallest
largest team the parties allow is found first (teams as even as possible), then same-size
exchanges balance the MMR sums.
"""
from __future__ import annotations

from typing import Sequence

from mmserver.matchmaking.rules import MatchRules
from mmserver.matchmaking.teams import balance

_MAX_ROUNDS = 64
_ARRANGE_STEPS = 10_000  # arrange()'s search in the match's order, before fits()'s order (_place_parties)
_SUBSETS_MAX_ROLES = 5  # up to this many roles, Hall's condition is checked set by set (role_sets)


class Lineup:
    def __init__(self, rules: MatchRules, use_roles: bool = True) -> None:
        self.teams = rules.teams
        self.team_size = rules.team_size
        roles = rules.roles if use_roles else ()
        self.role_names = tuple(name for name, _ in roles)
        self.role_counts = tuple(count for _, count in roles)
        self.index = {name: bit for bit, name in enumerate(self.role_names)}
        self.k = len(self.role_names)
        self.all_roles = (1 << self.k) - 1
        self._fits: dict[tuple, bool] = {}  # (keys, lo) -> fits(keys, lo)
        # Search steps (a node of the party search, a party member's role vectors) fits() may
        # still spend, as a one-item list the caller refills; None: no limit. Placing parties
        # with role offers is a search whose cost the tickets' offers choose: the caller bounds
        # it per anchor and per tick (constrained.py). Packing sizes alone, and solos with
        # roles, cost little and are memoised by few distinct keys: never bounded.
        self.allowance: list[int] | None = None
        self.undecided = 0  # fits() answers None so far
        self._options: dict[tuple, list[tuple[int, tuple]]] = {}
        self._solos_fill: dict[tuple, bool] = {}  # solos_fill() beyond _SUBSETS_MAX_ROLES, by its arguments
        # Packed role counts (_pack_counts): a field holds up to the slots of all teams (so the
        # teams' open slots can be summed packed), below the guard bit.
        self._width = (self.team_size * self.teams).bit_length() + 1
        self._guards = sum([1 << self._width * b + self._width - 1 for b in range(self.k)])
        self._names: dict[tuple, tuple[str, ...]] = {}
        self._bits = _BitsOf()  # mask -> its role bits, made when first asked for
        self._slots = [count * self.teams for count in self.role_counts]  # per role, over all teams
        self._total_slots = sum(self._slots)
        # Hall's condition (solo players, one role each, role b taking at most so many) is
        # checked over every non-empty set R of roles when they are few: the masks that lie
        # within R, and the slots of R over all teams. That is 3^k masks in all, so beyond
        # _SUBSETS_MAX_ROLES roles (a mode may declare 16) players are assigned by augmenting
        # paths instead (_assigned), at a cost that grows with the players, not with 2^k.
        self.role_sets = None
        if self.k <= _SUBSETS_MAX_ROLES:
            self.role_sets = [([mask for mask in range(1, self.all_roles + 1) if not mask & ~subset],
                                sum(self._slots[b] for b in self._bits[subset]))
                               for subset in range(1, self.all_roles + 1)]

    # --- keys --------------------------------------------------------------------------------

    def masks(self, size: int, offered: Sequence[Sequence[str]]) -> tuple[int, ...] | None:
        """One role mask per player; None when a player offers no role of the mode."""
        if not self.k:
            return ()
        if not offered:
            return (self.all_roles,) * size
        out = []
        index = self.index
        for offer in offered:
            mask = 0
            for role in offer:
                bit = index.get(role)
                if bit is not None:
                    mask |= 1 << bit
            if not mask:
                return None
            out.append(mask)
        return tuple(out)

    def key(self, size: int, masks: tuple[int, ...]):
        return (size, tuple(sorted(masks))) if self.k else size

    def most(self, key) -> int:
        """The most tickets of this key one match can hold (an upper bound, exact for solos):
        the match's players over the size and, with roles, for each set R of roles among the
        key's offers and their union, the slots of R over all teams over the key's players
        whose offers lie within R (each of them takes a role of R)."""
        if not self.k:
            return self.team_size * self.teams // key
        size, masks = key
        most = self.team_size * self.teams // size
        union = 0
        for mask in masks:
            union |= mask
        for within in {*masks, union}:
            inside = sum(1 for mask in masks if not mask & ~within)
            most = min(most, sum(self._slots[b] for b in self._bits[within]) // inside)
        return most

    # --- feasibility -------------------------------------------------------------------------

    def fits(self, keys: tuple, lo: int = 0) -> bool | None:
        """Can tickets with these keys (sorted) be placed in the teams, each team holding at
        least `lo` players (0: the set need not be complete)? None: undecided, because the
        search for a placement ran out of `allowance` (falsy: callers treat it as no; it is
        not memoised, so a later call with steps left decides it)."""
        memo_key = (keys, lo)
        found = self._fits.get(memo_key)
        if found is None:
            if not self.k:
                found = _pack(list(keys), self.teams, lo, self.team_size) is not None
            elif not self._players_fit(keys):
                found = False
            elif all(size == 1 for size, _ in keys):
                found = True
            else:
                allowance = self.allowance
                try:
                    if allowance is not None and allowance[0] <= 0:
                        raise _Spent
                    found = self._place_roles([masks for _, masks in keys], False, allowance) is not None
                except _Spent:
                    self.undecided += 1
                    return None
            self._fits[memo_key] = found
        return found

    def _players_fit(self, keys: tuple) -> bool:
        """Hall's condition for the players of these tickets taken one by one, over the slots
        of all teams: for every set R of roles, the players whose offers lie within R are no
        more than the slots of R. Exact for solo tickets alone (fits() then places no party);
        for parties necessary, and it refuses most sets that fail (parties must also stay on
        one team: _place_roles decides that)."""
        if self.role_sets is None:
            masks = [mask for _, of_ticket in keys for mask in of_ticket]
            return len(masks) <= self._total_slots and _all_assigned(masks, self._slots, self._bits)
        count = [0] * (self.all_roles + 1)
        players = 0
        for size, masks in keys:
            players += size
            for mask in masks:
                count[mask] += 1
        if players > self._total_slots:
            return False
        for within, slots in self.role_sets:
            if sum([count[mask] for mask in within]) > slots:
                return False
        return True

    def solos_fill(self, first: int, masks: list[tuple[int, int]]) -> bool:
        """Can solo players, one offering the roles of mask `first` and `masks` ((mask, how
        many offer it), a mask once), fill every slot of a match, the first among them? The largest
        assignment of players to slots is, by max-flow/min-cut, the least over role sets Y of
        (slots of Y) + (players offering a role outside Y); the first player can then be in
        it (the sets of players an assignment covers form a matroid)."""
        total = self._total_slots
        if self.role_sets is None:
            # Memoised: the region and distance checks of constrained.py ask it of many windows.
            memo_key = (first, tuple(sorted(masks)))
            found = self._solos_fill.get(memo_key)
            if found is None:
                # Augmenting paths never unassign a player: the first one, assigned first, stays.
                players = [first] + [mask for mask, n in masks for _ in range(n)]
                found = len(players) >= total and _assigned(players, self._slots, self._bits, total) == total
                self._solos_fill[memo_key] = found
            return found
        by_mask = [0] * (self.all_roles + 1)
        for mask, n in masks:
            by_mask[mask] = n
        by_mask[first] += 1
        players = sum(by_mask)
        if players < total:
            return False
        # The cut of Y: slots of Y + players offering a role outside Y, i.e. all players less
        # those whose roles lie within Y (Y empty: all players).
        for within, slots in self.role_sets:
            if slots + players - sum([by_mask[mask] for mask in within]) < total:
                return False
        return True

    # --- arrangement -------------------------------------------------------------------------

    def arrange(self, sizes: Sequence[int], masks: Sequence[tuple[int, ...]], mmrs: Sequence[float],
                lo: int) -> tuple[list[list[int]], list[tuple[str, ...]] | None]:
        """Teams (item indexes) and, with roles, each item's roles in player order."""
        n = len(sizes)
        if self.k:
            solos = all(len(m) == 1 for m in masks)
            if solos:
                plan = self._assign_solos(masks)
            else:
                plan = self._place_parties(masks)
            if plan is None:
                raise ValueError("tickets do not fill the roles")
            team_of, role_bits = plan
            members: list[list[int]] = [[] for _ in range(self.teams)]
            for item in range(n):
                members[team_of[item]].append(item)
            if solos:  # one player each: the role bit alone tells the classes apart (int compares)
                classes = [bits[0] for bits in role_bits]
            else:
                classes = [(sizes[i], tuple(sorted(role_bits[i]))) for i in range(n)]
            _improve(members, mmrs, sizes, classes)
            return members, [self._role_names_of(bits) for bits in role_bits]
        total = sum(sizes)
        if lo == self.team_size and total == self.team_size * self.teams:
            return balance(mmrs, sizes, self.team_size, self.teams), None
        # Teams as even as the parties allow: the smallest largest team that packs.
        for cap in range(max(lo, -(-total // self.teams)), self.team_size + 1):
            team_of = _pack(list(sizes), self.teams, lo, cap)
            if team_of is not None:
                break
        else:
            raise ValueError(f"sizes {sorted(sizes)} do not make {self.teams} teams of {lo}..{self.team_size}")
        members = [[] for _ in range(self.teams)]
        for item in range(n):
            members[team_of[item]].append(item)
        _improve(members, mmrs, sizes, list(sizes))
        return members, None

    # --- roles -------------------------------------------------------------------------------

    def _place_parties(self, masks: Sequence[tuple[int, ...]]):
        """_place_roles(masks, construct=True) for a match with parties. The search runs in the
        match's order, within _ARRANGE_STEPS; past them (crafted lobbies took 0.5 M steps in
        that order), in the order fits() searched the same tickets and found a placement in:
        tickets by key, each party's players by role mask; the placement found is then mapped
        back to the tickets and their players."""
        try:
            return self._place_roles(list(masks), True, [_ARRANGE_STEPS])
        except _Spent:
            pass
        order = sorted(range(len(masks)), key=lambda i: (len(masks[i]), sorted(masks[i])))
        players = [sorted(range(len(masks[i])), key=masks[i].__getitem__) for i in order]
        plan = self._place_roles([tuple(masks[i][k] for k in by_mask) for i, by_mask in zip(order, players)],
                                 True, None)
        if plan is None:
            return None
        team_at, bits_at = plan
        team_of = [0] * len(masks)
        role_bits: list[tuple[int, ...]] = [()] * len(masks)
        for at, (i, by_mask) in enumerate(zip(order, players)):
            team_of[i] = team_at[at]
            bits = [0] * len(by_mask)
            for k, bit in zip(by_mask, bits_at[at]):
                bits[k] = bit
            role_bits[i] = tuple(bits)
        return team_of, role_bits

    def _role_names_of(self, bits: tuple[int, ...]) -> tuple[str, ...]:
        """The role names of these role bits; memoised (a few tuples serve every match)."""
        found = self._names.get(bits)
        if found is None:
            found = self._names[bits] = tuple(self.role_names[b] for b in bits)
        return found

    def _party_options(self, masks: tuple[int, ...], allowance: list[int] | None) -> list[tuple[int, tuple]]:
        """The role count vectors a party can take within one team's role counts, packed
        (_pack_counts), each with the first pick (one role bit per member, members in order,
        lowest bits first) that gives it, in the order of those picks: the order a search over
        every pick would meet them, found without one (a party of 5 offering every one of 5
        roles has 3,125 picks). Every partial vector found spends a step of `allowance`;
        _Spent when none is left."""
        found = self._options.get(masks)
        if found is None:
            width, guards = self._width, self._guards
            team = self._pack_counts(self.role_counts) | guards
            choices = [[1 << width * b for b in self._bits[m]] for m in masks]
            # reach[j]: the vectors the members from j on can take together within one team's
            # role counts (a party plays on one team: no other vector is ever placed; a sum
            # within them has every part within them, so the first picks are unchanged).
            reach = [{0}]
            for units in reversed(choices):
                reach.append({w for v in reach[-1] for u in units if team - (w := v + u) & guards == guards})
                if allowance is not None:
                    allowance[0] -= len(reach[-1])
                    if allowance[0] < 0:
                        raise _Spent
            reach.reverse()
            picks = []
            for total in reach[0]:
                pick = []
                rest = total
                for j, units in enumerate(choices):
                    for b, unit in zip(self._bits[masks[j]], units):
                        if rest - unit in reach[j + 1]:
                            pick.append(b)
                            rest -= unit
                            break
                picks.append((tuple(pick), total))
            picks.sort()
            found = self._options[masks] = [(total, pick) for pick, total in picks]
        return found

    def _pack_counts(self, counts: Sequence[int]) -> int:
        """Role counts as one int, a field of _width bits per role (role 0 lowest), each field's
        top bit clear: with `guards` (every top bit set) OR-ed in, subtracting a packed vector
        never borrows across fields, and a field's top bit survives exactly when its count
        covers the vector's. So `(here | guards) - vec & guards == guards` compares every role
        at once."""
        return sum([count << self._width * b for b, count in enumerate(counts)])

    def _unpack_counts(self, packed: int) -> list[int]:
        width = self._width
        field = (1 << width - 1) - 1
        return [packed >> width * b & field for b in range(self.k)]

    def _assign_solos(self, masks: Sequence[tuple[int, ...]]):
        """_place_roles(masks, construct=True) for solo tickets alone (the common match), without
        its search for parties: the same augmenting paths, the same slots dealt to teams."""
        k, teams = self.k, self.teams
        n = len(masks)
        if n > self.team_size * teams:
            return None
        caps = self._slots
        holders: list[list[int]] = [[] for _ in range(k)]
        bits = self._bits
        flat = [of_ticket[0] for of_ticket in masks]
        for s in range(n):
            # The first step of _augment_one, without the call: the solo's first role has room.
            b = bits[flat[s]][0]
            if len(holders[b]) < caps[b]:
                holders[b].append(s)
            elif not _augment_one(flat, s, set(), holders, caps, bits):
                return None
        team_of = [0] * n
        role_bits: list[tuple[int, ...]] = [()] * n
        _deal(holders, [self.role_counts] * teams, team_of, role_bits)
        return team_of, role_bits

    def _place_roles(self, masks: list[tuple[int, ...]], construct: bool, allowance: list[int] | None):
        """Parties by search, solos by Hall's condition. With `construct`, (team of each item,
        role bits of each item's players), else a truthy value; None when impossible. Each
        node of the search (a party placed, or every party placed) spends a step of
        `allowance`; _Spent when none is left."""
        k, teams = self.k, self.teams
        if sum(len(m) for m in masks) > self.team_size * teams:
            return None
        parties = sorted((i for i in range(len(masks)) if len(masks[i]) > 1), key=lambda i: -len(masks[i]))
        solos = [i for i in range(len(masks)) if len(masks[i]) == 1]
        solo_masks = [masks[i][0] for i in solos]
        if self.role_sets is not None:
            solo_count = [0] * (self.all_roles + 1)
            for mask in solo_masks:
                solo_count[mask] += 1
            # Per set of roles with solos offering only roles in it: its roles and those solos
            # (they do not change while the parties are placed).
            solos_within = []
            if solo_masks:
                for subset, (within, _) in enumerate(self.role_sets, 1):
                    inside = sum([solo_count[mask] for mask in within])
                    if inside:
                        solos_within.append((self._bits[subset], inside))
        # Each team's open slots per role, packed (_pack_counts): a party's options are then
        # checked against a team with one subtraction each.
        rem = [self._pack_counts(self.role_counts)] * teams
        guards = self._guards
        placed: dict[int, tuple[int, tuple]] = {}
        failed: set = set()
        halls: dict[int, bool] = {}  # hall() by the slots the parties leave, packed
        options = [self._party_options(masks[item], allowance) for item in parties]
        role_sets, bits = self.role_sets, self._bits

        # The nested functions below refer to themselves (and `place` to `hall`): each call
        # would leave a reference cycle of functions, cells and lists for the cyclic
        # collector (~14,000 calls per tick over a big queue). Unbinding them on the way
        # out lets reference counting free it all at once.
        try:
            def hall() -> bool:
                # Many placements of the parties leave the same slots: decided once each.
                open_slots = sum(rem)  # the fields cannot carry (_width)
                found = halls.get(open_slots)
                if found is None:
                    caps = self._unpack_counts(open_slots)
                    if role_sets is None:
                        found = _all_assigned(solo_masks, caps, bits)
                    else:
                        found = all(inside <= sum([caps[b] for b in roles_of]) for roles_of, inside in solos_within)
                    halls[open_slots] = found
                return found

            def place(j: int) -> bool:
                if allowance is not None:
                    allowance[0] -= 1
                    if allowance[0] < 0:
                        raise _Spent
                if j == len(parties):
                    # Solos only, to construct: the augmenting paths below fail exactly when
                    # Hall's condition does, so it need not be checked first.
                    return (construct and not parties) or hall()
                state = (j, tuple(sorted(rem)))
                if state in failed:
                    return False
                item = parties[j]
                tried = set()
                for t in range(teams):
                    here = rem[t]
                    if here in tried:
                        continue
                    tried.add(here)
                    open_slots = here | guards
                    for vec, pick in options[j]:
                        if open_slots - vec & guards == guards:
                            rem[t] = here - vec
                            placed[item] = (t, pick)
                            if place(j + 1):
                                return True
                    rem[t] = here
                failed.add(state)
                return False

            if not place(0):
                return None
            if not construct:
                return True
            team_of = [0] * len(masks)
            role_bits: list[tuple[int, ...]] = [()] * len(masks)
            for item, (t, pick) in placed.items():
                team_of[item] = t
                role_bits[item] = tuple(pick)
            slots = [self._unpack_counts(r) for r in rem]
            caps = self._unpack_counts(sum(rem))
            holders: list[list[int]] = [[] for _ in range(k)]
            flat = [of_item[0] for of_item in masks]  # read for the solos only
            for s in solos:
                if not _augment_one(flat, s, set(), holders, caps, bits):
                    return None  # Hall's condition said otherwise; never expected
            _deal(holders, slots, team_of, role_bits)
            return team_of, role_bits
        finally:
            hall = place = None


def _deal(holders: list[list[int]], slots: Sequence[Sequence[int]], team_of: list[int],
          role_bits: list[tuple[int, ...]]) -> None:
    """The solos holding role b (holders[b]) go to the teams' open slots of b (slots[t][b]),
    team after team: each solo's team and role written into team_of and role_bits."""
    for b, queue in enumerate(holders):
        for t, open_slots in enumerate(slots):
            for _ in range(open_slots[b]):
                if not queue:
                    break
                s = queue.pop()
                team_of[s] = t
                role_bits[s] = (b,)


class _BitsOf(dict):
    """Role mask -> its role bits (lowest first), computed when first asked for: a mode may
    declare 16 roles, whose 65,536 masks a lineup never meets but a few of."""

    def __missing__(self, mask: int) -> list[int]:
        bits = self[mask] = [b for b in range(mask.bit_length()) if mask >> b & 1]
        return bits


def roles_fit_one_team(offers: Sequence[Sequence[str]], roles: Sequence[tuple[str, int]]) -> bool:
    """Whether players offering these roles (one list per player) can all play on one team of
    a mode with these role counts: a party is never split, so one whose offers cannot share
    out one team's roles can never be matched."""
    index = {role: b for b, (role, _count) in enumerate(roles)}
    masks = [sum(1 << index[role] for role in offered) for offered in offers]
    return _all_assigned(masks, [count for _role, count in roles], _BitsOf())


def _assigned(masks: Sequence[int], caps: Sequence[int], bits: _BitsOf, stop_at: int) -> int:
    """How many of these players (role masks), in order, get a role by augmenting paths, role
    b taking at most caps[b]; stops once `stop_at` are. A player assigned stays assigned (a
    path only moves players between roles), so the count is that of a largest assignment."""
    holders: list[list[int]] = [[] for _ in caps]
    assigned = 0
    for s in range(len(masks)):
        if _augment_one(masks, s, set(), holders, caps, bits):
            assigned += 1
            if assigned == stop_at:
                break
    return assigned


def _all_assigned(masks: Sequence[int], caps: Sequence[int], bits: _BitsOf) -> bool:
    """Does every one of these players get a role (as _assigned)? A player no path reaches at
    its turn is never reached later (assigning more players opens no new path to a role), so
    the first one left out decides it."""
    holders: list[list[int]] = [[] for _ in caps]
    for s in range(len(masks)):
        if not _augment_one(masks, s, set(), holders, caps, bits):
            return False
    return True


def _augment_one(masks: Sequence[int], s: int, seen: set, holders: list[list[int]], caps: Sequence[int],
                 bits: _BitsOf) -> bool:
    """An augmenting path giving player s (role mask masks[s]) a role: a role with room takes
    it, else a player holding one of its roles moves on along a path of its own. The paths
    below one role only change the holders of roles not yet seen, never that role's."""
    for b in bits[masks[s]]:
        if b not in seen:
            seen.add(b)
            held = holders[b]
            if len(held) < caps[b]:
                held.append(s)
                return True
            for at, other in enumerate(held):
                if _augment_one(masks, other, seen, holders, caps, bits):
                    held[at] = s
                    return True
    return False


class _Spent(Exception):
    """A search ran out of its allowance (Lineup.allowance)."""


def _pack(sizes: list[int], teams: int, lo: int, cap: int) -> list[int] | None:
    """A team for each ticket so that every team holds `lo`..`cap` players, or None."""
    total = sum(sizes)
    if total > cap * teams or total < lo * teams or any(s > cap for s in sizes):
        return None
    order = sorted(range(len(sizes)), key=sizes.__getitem__, reverse=True)
    load = [0] * teams
    team_of = [0] * len(sizes)
    failed: set = set()
    suffix = [0] * (len(order) + 1)
    for j in range(len(order) - 1, -1, -1):
        suffix[j] = suffix[j + 1] + sizes[order[j]]

    def place(j: int) -> bool:
        if sum(lo - x for x in load if x < lo) > suffix[j]:
            return False
        if j == len(order):
            return True
        state = (j, tuple(sorted(load)))
        if state in failed:
            return False
        item = order[j]
        size = sizes[item]
        tried = set()
        # Least loaded team first: the first packing found is an even one.
        for t in sorted(range(teams), key=load.__getitem__):
            if load[t] + size <= cap and load[t] not in tried:
                tried.add(load[t])
                load[t] += size
                team_of[item] = t
                if place(j + 1):
                    return True
                load[t] -= size
        failed.add(state)
        return False

    return team_of if place(0) else None


def _improve(members: list[list[int]], mmrs: Sequence[float], sizes: Sequence[int], classes: Sequence) -> None:
    """Exchange tickets of the same class between teams, best first, while the sum of squared
    team MMR sums (mmr x size) drops."""
    teams = len(members)
    weight = [m * s for m, s in zip(mmrs, sizes)]
    sums = [sum(weight[i] for i in team) for team in members]
    for _ in range(_MAX_ROUNDS):
        best_gain = 0.0
        best = None
        for a in range(teams):
            for b in range(teams):
                gap = sums[a] - sums[b]
                if gap <= 0:
                    continue
                for x in members[a]:
                    cx = classes[x]
                    wx = weight[x]
                    for y in members[b]:
                        if classes[y] == cx:
                            d = wx - weight[y]
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
