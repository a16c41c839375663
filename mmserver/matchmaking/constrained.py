"""Forming matches for modes with rules: attributes, latency, roles, lobbies and team shapes.

`propose_constrained(tickets, rules, now)` serves every mode that is not `rules.plain`
(matcher.match_queue picks it). Pure Python, no I/O.

Semantics
---------
- Eligible tickets: 1 <= size <= team_size, and `roles` empty or one tuple per player. Other
  tickets are ignored (neither proposed nor in `blocked`).
- Anchors are taken oldest first (enqueued_at, ties by ticket_id). An anchor's match holds the
  anchor and unmatched tickets only, and is checked with the limits in force for the anchor
  (its wait = now - enqueued_at). A ticket older than the anchor may join (it failed as an
  anchor earlier); its own limits are wider, so the match satisfies the limits of its oldest
  ticket, as the specification requires, and never anything looser.
- MMR window: the spread of the tickets' MMRs is at most window(rules, wait).
- `same`: every ticket has an equal value. `overlap`: the tickets' lists share a value; the
  proposal's `attributes[rule.attribute]` is the first value of the anchor's list that every
  ticket has. `distance`: largest minus smallest value at most rule.limit(wait); the attribute
  "mmr" is the ticket's MMR. A ticket lacking an attribute a rule uses never satisfies it.
- Latency (rules.latency set): a ticket may play in region r of rules.regions when
  latencies[r] <= latency.limit(wait); a ticket with a fixed `region` plays only there (as
  latency 0). The match's region is, among the regions allowed for all its tickets, the one
  with the lowest worst latency (ties: order of rules.regions). Without rules.latency,
  Proposal.region is None and the region fields are ignored.
- Roles (rules.roles set; teams are then always full): every player takes exactly one role it
  offers (no roles offered: any role), each team's role counts are met exactly, parties stay on
  one team. Proposal.roles maps ticket id -> one role per player in ticket order ({} without
  roles).
- Team shapes: `teams` teams (1 = one lobby). A full match (every team exactly team_size) is
  always allowed; once the anchor has waited fill_wait_s (and min_team_size < team_size, no
  roles), a match whose every team holds min_team_size..team_size players is allowed too. The
  largest match found is preferred, with teams as even as the parties allow (lineup.py).
  Parties never split. Teams are balanced by MMR sums, within the roles.
- Each ticket is in at most one proposal; as many matches are formed as the rules allow, oldest
  anchors first.

How: tickets are partitioned by the values of the `same` rules, each partition laid out in MMR
order as a linked list (as pool.Pool, with sentinels between partitions), so an anchor walks its
nearest unmatched neighbours within its MMR window. Each neighbour is filtered pairwise against
the anchor (a shared region, a shared value of each `overlap` list, each `distance` within the
limit of the anchor's value); the walk stops after `_walk_limit` neighbours or `_pass_limit`
that pass and count. A neighbour that passes counts only while the walk has met fewer of its
lineup key (size and role offers) than one match can hold besides the anchor (Lineup.most:
the players of a match over its size, and the slots of the roles it offers): a crowd of one
kind (tank-only solos where a match takes two tanks, parties of 4 where a 5v5 takes two) can
then not end the walk before the kinds the match lacks. Those beyond what a match holds are
candidates while there are fewer than `_pass_limit`, and past that only their sizes are kept
(they name "roles" or "players"); the line-up checks count every key up to what a match
holds, and no further. The match is then picked from the candidates by a greedy
nearest-first selection (every collective condition kept: common region and values, spreads,
roles and team sizes still fillable), which runs along the walk and ends it as soon as its match is full (it would pick
the same among more candidates). When that fails, the same pick runs within each window of
each `distance` rule (the candidates whose values lie within its limit of one another:
_window_pick), and the full match of least MMR spread is taken. When none fills, an
exhaustive depth-first search over the candidates decides (it also finds the largest match of
a lobby that may start short), bounded by `_NODE_BUDGET` nodes (both are skipped when the
regions and distance rules alone rule every match out). Below these limits the search is
exhaustive: an anchor is matched whenever it can be (past `_pass_limit` candidates, those of
a key beyond what a match holds are not searched). With roles, placing parties is also
bounded, in steps per anchor and per tick (_FIRST_PASS_STEPS and below): an anchor out of
steps is undecided, waits as "players", and may be tried again in a second pass.

`blocked`: every eligible ticket left unmatched gets one name, found when it fails as an
anchor (so against the queue at its turn). With "the smallest match" = teams x the smallest
team allowed for it now, the first of these that holds is named:

1. "players": the unmatched eligible players of the whole queue are fewer than the smallest
   match;
2. each `same` rule in configuration order: the ticket lacks the attribute, or fewer players
   share its values of this rule and the earlier `same` rules;
3. "mmr": fewer players than the smallest match in its MMR window (in its partition);
4. within the MMR window, filters applied in turn, cumulatively: "latency" (can share a region
   with the ticket), each `overlap` rule (shares a value with the ticket's list), each
   `distance` rule (within the limit of the ticket's value), in configuration order; the first
   that leaves fewer players than the smallest match is named;
5. every filter leaves enough players but no match was found: "roles" when no team and role
   assignment can be made from those candidates with the ticket (ignoring the collective
   conditions), or "players" when the party sizes cannot even make the teams; otherwise the
   collective condition that fails for such an assignment: the first `distance` rule whose
   spread is too wide, else "mmr", else "latency" (no region common to all), else the first
   `overlap` rule without a common value, else "players".

Steps 1 to 3 cost a few operations per ticket (step 3 stops at the first neighbour outside the
window), so a big queue that cannot match costs little per tick.
"""
from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right, insort
from collections import Counter
from itertools import repeat
from math import isfinite
from operator import getitem, itemgetter, lt, sub
from typing import Callable, Sequence

from mmserver.matchmaking.lineup import Lineup
from mmserver.matchmaking.memo import UNSEEN, FailureMemo
from mmserver.matchmaking.model import Matching, Proposal, QueuedTicket
from mmserver.matchmaking.pool import _order_ties
from mmserver.matchmaking.rules import MMR_RULE, MatchRules

_INF = float("inf")
_NAN = float("nan")
_MISSING = object()
_NODE_BUDGET = 600  # depth-first search nodes per anchor
# Steps of the searches for a lineup with roles (a node of the search placing parties, a node
# of _composable's search, a party member's role combinations): a party's role offers are its
# players' to choose, and placing parties with many offers is a search that, unbounded, let a
# queue of them make one tick take minutes. So anchors take two passes. The first, oldest
# first, gives every anchor _FIRST_PASS_STEPS (which the matches of typical queues need no
# more than), fewer when the queue is big: _FIRST_PASS_TOTAL shared out, but never fewer than
# _FIRST_PASS_FLOOR. The second gives each anchor the first left undecided up to
# _ANCHOR_STEPS, out of _SECOND_PASS_STEPS in all, starting at a place that moves from tick to
# tick. Old tickets whose searches fail can then neither stop the cheap matches of the first
# pass nor keep the same anchors out of the second pass tick after tick. Solo tickets with
# roles and modes without roles spend no steps. See docs/MATCH_RULES.md.
_FIRST_PASS_STEPS = 200
_FIRST_PASS_TOTAL = 1_000_000
_FIRST_PASS_FLOOR = 20
_ANCHOR_STEPS = 1000
_SECOND_PASS_STEPS = 200_000
_RELAXED_BUDGET = 600  # nodes of the search that names why an anchor failed
_RULE_OUT_CHECKS = 128  # _composable calls per anchor of _regions_or_spreads_rule_out
_SPREAD_STARTS = 32  # smallest values tried per distance rule before a search (_regions_or_spreads_rule_out)
_primes = [2, 3, 5, 7, 11, 13]  # grown by _prime(); rebound, never changed in place


def _prime(i: int) -> int:
    """The i-th prime, from 0: the code of the i-th distinct lineup key of a call (_columns)."""
    global _primes
    while i >= len(_primes):
        limit = 2 * _primes[-1] + 1024
        sieve = bytearray([1]) * (limit + 1)
        sieve[0] = sieve[1] = 0
        for n in range(2, math.isqrt(limit) + 1):
            if sieve[n]:
                sieve[n * n::n] = bytes(len(range(n * n, limit + 1, n)))
        _primes = [n for n in range(limit + 1) if sieve[n]]
    return _primes[i]


def _walk_limit(players_per_match: int) -> int:
    return 16 * players_per_match + 32


def _pass_limit(players_per_match: int) -> int:
    return 4 * players_per_match + 16


def _number(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


class _Cand:
    """A ticket as a candidate for one anchor's match (values relative to that anchor)."""

    __slots__ = ("pos", "size", "vals", "rmask", "omasks", "key", "code", "masks", "mmr")

    def __init__(self, pos, size, vals, rmask, omasks, key, code, masks, mmr):
        self.pos = pos
        self.size = size
        self.vals = vals  # one value per dimension: MMR, then each distance rule
        self.rmask = rmask  # regions allowed (bit per rules.regions)
        self.omasks = omasks  # per overlap rule: bit i = the anchor's i-th value is shared
        self.key = key  # lineup key (size, role masks)
        self.code = code  # the key's prime: a multiset of keys is their product (_columns)
        self.masks = masks
        self.mmr = mmr


def _window_starts(a: _Cand, cands: Sequence[_Cand], d: int, limit: float) -> list[float] | None:
    """The smallest values of the windows [x, x + limit] of dimension d (a distance rule) that
    can hold a match with the anchor: its own value and every candidate's value below it within
    the limit, in order; None past _SPREAD_STARTS of them (too many windows to try)."""
    av = a.vals[d]
    starts = {av}
    for c in cands:
        v = c.vals[d]
        if v <= av and av - v <= limit:
            starts.add(v)
            if len(starts) > _SPREAD_STARTS:
                return None
    return sorted(starts)


def propose_constrained(tickets: Sequence[QueuedTicket], rules: MatchRules, now: float,
                        on_proposal: Callable[[Proposal], None] | None = None,
                        memo: FailureMemo | None = None) -> Matching:
    """The matching; `on_proposal`, when given, is called with each proposal as it is formed.
    `memo`: the queue's FailureMemo, given to every tick of one queue, so the anchors that
    failed in the tick before are not examined again while nothing within their reach changed
    (same answers, memo.py)."""
    return _Constrained(tickets, rules, now, memo).run(on_proposal)


class _Constrained:
    def __init__(self, tickets: Sequence[QueuedTicket], rules: MatchRules, now: float,
                 memo: FailureMemo | None = None) -> None:
        self.rules = rules
        self.now = now
        self.memo = memo
        # The last walk's reach (memo.py): its MMR distance; whether the memo may keep its
        # answer (no lineup search could have spent steps on it); whether the answer holds for
        # any MMR window that covers the reach (see _anchor). Set by _anchor.
        self._reach: float | None = None
        self._reach_kept = False
        self._any_window = False
        hi = rules.team_size
        self.lineup = Lineup(rules)
        self.sizes_only = Lineup(rules, use_roles=False) if rules.roles else self.lineup
        self.same = [r for r in rules.rules if r.kind == "same"]
        self.overlaps = [r for r in rules.rules if r.kind == "overlap"]
        self.distances = [r for r in rules.rules if r.kind == "distance"]
        self.regions = rules.regions if rules.latency is not None else ()
        self._composable_memo: dict = {}
        # The lineups' search allowance (Lineup.allowance), refilled per anchor from the call's.
        self.allowance = [0]
        self.lineup.allowance = self.allowance
        self.steps_spent = 0
        self._checks_left = 0  # _composable calls _regions_or_spreads_rule_out may still make
        self.eligible = [t for t in tickets if 1 <= t.size <= hi and (not t.roles or len(t.roles) == t.size)]
        self.max_players = rules.team_size * rules.teams
        self.fill_possible = (not rules.roles and rules.min_team_size is not None
                              and rules.min_team_size < hi)
        # Filters of the walk, in blocked_by order; the anchor's own pass is checked the same way.
        self.filter_names = ((["latency"] if rules.latency is not None else [])
                             + [r.name for r in self.overlaps] + [r.name for r in self.distances])

    # --- layout ------------------------------------------------------------------------------

    def _layout(self) -> None:
        el = self.eligible
        n = len(el)
        self.mmrs = mmrs = [t.mmr for t in el]
        ids = [t.ticket_id for t in el]
        by_mmr = sorted(range(n), key=mmrs.__getitem__)
        # Equal MMRs in ticket id order, not in the order the queue was read in (it follows
        # the tickets' TTL deadlines, which reads push back): the matching is then a function
        # of the queue alone, which the failure memo relies on.
        _order_ties(by_mmr, mmrs, ids)
        # The MMR between neighbouring tickets in the middle 80% of the queue (memo.py sizes
        # its buckets by it; one far-off ticket does not move it).
        low, high = n // 10, (9 * n) // 10
        self.mmr_spacing = (mmrs[by_mmr[high]] - mmrs[by_mmr[low]]) / (high - low) if high > low else 0.0
        same = self.same
        if not same:
            keys = None
            groups = [by_mmr]
        else:
            attrs = [r.attribute for r in same]
            if len(attrs) == 1:
                a = attrs[0]
                keys = [(t.attributes.get(a, _MISSING),) for t in el]
            else:
                keys = [tuple(t.attributes.get(a, _MISSING) for a in attrs) for t in el]
            by_key: dict = {}
            for i in by_mmr:
                k = keys[i]
                g = by_key.get(k)
                if g is None:
                    by_key[k] = [i]
                else:
                    g.append(i)
            groups = list(by_key.values())
        self.keys = keys
        self.partition_keys = list(by_key) if same else []
        # Positions: -inf sentinel, the partition in MMR order, +inf sentinel, next partition...
        layout: list[int] = []
        mmr: list[float] = []
        for g in groups:
            layout.append(-1)
            mmr.append(-_INF)
            layout.extend(g)
            mmr.extend([mmrs[i] for i in g])
            layout.append(-1)
            mmr.append(_INF)
        npos = len(layout)
        self.layout = layout
        # Contiguous doubles and machine integers (as pool.Pool): a walk reads its neighbours'
        # MMRs and links from shared cache lines, not from float and int objects scattered over
        # the heap in the order the tickets were read.
        self.mmr = array("d", mmr)
        self.left = array("l", range(-1, npos - 1))
        self.right = array("l", range(1, npos + 1))
        self.taken = bytearray(npos)
        pos_of = [0] * n
        for p, i in enumerate(layout):
            if i >= 0:
                pos_of[i] = p
        self.pos_of = pos_of
        enq = [t.enqueued_at for t in el]
        order = sorted(range(n), key=enq.__getitem__)
        _order_ties(order, enq, ids)
        self.order = order
        self.enq = enq
        self.ids = ids
        sizes = [t.size for t in el]
        self.sizes = sizes
        self.total_players = sum(sizes)
        self.p_size = None  # the walk's columns: built by the first anchor that walks
        # Players per prefix of the `same` values (prefix k: the first k + 1 rules).
        self.prefix_players: list[dict] = []
        if same:
            # A partition holds the tickets of one key: its players, then summed per prefix.
            key_players = [(key, sum(map(sizes.__getitem__, g))) for key, g in by_key.items()]
            for k in range(len(same)):
                counts: dict = {}
                for key, players in key_players:
                    pk = key[:k + 1]
                    counts[pk] = counts.get(pk, 0) + players
                self.prefix_players.append(counts)

    # --- the tick ----------------------------------------------------------------------------

    def run(self, on_proposal: Callable[[Proposal], None] | None = None) -> Matching:
        rules = self.rules
        proposals: list[Proposal] = []
        blocked: dict[str, str] = {}
        memo = self.memo
        if not self.eligible:
            if memo is not None:
                memo.begin([], None, [], 0.0)
            return Matching(proposals, blocked)
        self._layout()
        if memo is not None:
            memo.begin(self.ids, self.keys, self.mmrs, self.mmr_spacing, self.now)
        latency, distances = rules.latency, self.distances
        base, growth, cap = rules.mmr_window, rules.mmr_window_growth_per_s, rules.mmr_window_max
        teams, hi = rules.teams, rules.team_size
        min_team = rules.min_team_size if self.fill_possible else hi
        fill_wait = rules.fill_wait_s
        # The limits are step functions of the anchor's wait: each stretch between two steps
        # (of any expansion, or fill_wait_s) has its own, computed once here rather than per
        # anchor. A stretch's limits are those at its start (before the first: the bases).
        steps = sorted({step.after_s for rule in ((latency,) if latency is not None else ()) + tuple(distances)
                        for step in rule.expand} | {fill_wait})
        limits_by_stretch = []
        for start, end in zip((-_INF, *steps), (*steps, _INF)):
            lo = min_team if start >= fill_wait else hi
            lat_limit = latency.limit(start) if latency is not None else 0.0
            dist_limits = tuple(r.limit(start) for r in distances)
            limits_by_stretch.append((lo, teams * lo, lat_limit, dist_limits, (lo, lat_limit, *dist_limits), end))
        now = self.now
        same = self.same
        keys = self.keys
        prefix_players = self.prefix_players
        mmr, left, right, taken = self.mmr, self.left, self.right, self.taken
        pos_of, enq, ids, sizes = self.pos_of, self.enq, self.ids, self.sizes
        layout = self.layout
        total_players = self.total_players
        lineup = self.lineup
        allowance = self.allowance
        second_pass_left = _SECOND_PASS_STEPS
        order = list(self.order)
        first_pass = len(order)
        first_pass_steps = min(_FIRST_PASS_STEPS, max(_FIRST_PASS_FLOOR, _FIRST_PASS_TOTAL // first_pass))
        # Answers in force (memo.py) are given without a recall while the counts checked before
        # one cannot refuse their anchors, whatever their limits: players in the queue, and in
        # each prefix of the anchor's `same` values, at least a whole match of full teams. A
        # partition with a prefix below that (at the start, or once matches took its players)
        # is in `short`, and its anchors go the whole way.
        in_force = memo.in_force if memo is not None else {}
        most_smallest = teams * hi
        short: set = set()
        by_prefix: list[dict] = []
        if same and in_force:
            for k in range(len(same)):
                members: dict = {}
                for key in self.partition_keys:
                    members.setdefault(key[:k + 1], []).append(key)
                by_prefix.append(members)
                for prefix, count in prefix_players[k].items():
                    if count < most_smallest:
                        short.update(members.get(prefix, ()))
        reused = 0
        # Anchors the first pass leaves undecided are appended: the second pass.
        for at, i in enumerate(order):
            if at == first_pass:
                # The second pass starts at a place that moves with the clock: undecided
                # anchors whose searches fail would otherwise spend it in the same order every
                # tick, and the ones after them never be served.
                rest = order[at:]
                start = (int(now * 1000) * 2654435761 & 0xFFFFFFFF) % len(rest)
                order[at:] = rest[start:] + rest[:start]
                i = order[at]
            p = pos_of[i]
            if taken[p]:
                continue
            if in_force and at < first_pass:
                reason = in_force.get(ids[i])
                if reason is not None and total_players >= most_smallest and not (short and keys[i] in short):
                    blocked[ids[i]] = reason
                    reused += 1
                    continue
            waited = now - enq[i]
            lo, smallest, lat_limit, dist_limits, stamp, next_step = limits_by_stretch[bisect_right(steps, waited)]
            if total_players < smallest:
                blocked[ids[i]] = "players"
                continue
            if same:
                key = keys[i]
                reason = None
                for k, rule in enumerate(same):
                    if key[k] is _MISSING or prefix_players[k][key[:k + 1]] < smallest:
                        reason = rule.name
                        break
                if reason is not None:
                    blocked[ids[i]] = reason
                    continue
            w = base + growth * waited if waited > 0 else base
            if w > cap:
                w = cap
            m = mmr[p]
            # Fast refusal: nobody in the window and the anchor alone is too small.
            if sizes[i] < smallest and m - mmr[left[p]] > w and mmr[right[p]] - m > w:
                blocked[ids[i]] = MMR_RULE
                continue
            if memo is not None:
                # `stamp`: the anchor's limits but its MMR window. Its answer is recalled only
                # under the same ones (and the same window, unless the answer holds for any).
                # Until when they hold (the wait reaching the next step, the window fixed):
                # the answer's time in force (memo.py).
                window_fixed = growth == 0 or w >= cap  # w only grows with the wait
                if at < first_pass:
                    reason = memo.recall(ids[i], stamp, w, enq[i], next_step, window_fixed)
                    if reason is UNSEEN:
                        # Only arrivals came within its reach: it holds if they all fail its
                        # filters early enough, or replace candidates of the same key (memo.py).
                        candidates = self._arrivals_leave_answer(i, lat_limit, dist_limits, *memo.unseen)
                        reason = memo.confirm(ids[i], candidates) if candidates >= 0 else None
                    if reason is not None:
                        blocked[ids[i]] = reason
                        continue
            if at < first_pass:
                granted = first_pass_steps
            else:
                granted = min(_ANCHOR_STEPS, second_pass_left)
                if granted <= 0:
                    break  # the rest stay blocked as the first pass left them
            allowance[0] = granted
            undecided = lineup.undecided
            match, reason = self._anchor(i, p, w, lat_limit, dist_limits, lo, smallest)
            spent = granted - max(allowance[0], 0)
            self.steps_spent += spent
            if at >= first_pass:
                second_pass_left -= spent
            if match is None:
                blocked[ids[i]] = reason
                if at < first_pass and lineup.undecided != undecided:
                    order.append(i)
                if memo is not None:
                    reach = self._reach
                    if reach is not None and self._reach_kept and not spent and lineup.undecided == undecided:
                        memo.remember(ids[i], stamp, w, keys[i] if same else (), m - reach, m + reach, reason,
                                      reach if self._any_window else None, self._counted, self._visited,
                                      self._tail, enq[i], next_step, window_fixed)
                    else:
                        memo.forget(ids[i])
                continue
            proposal = self._propose(*match, lo)
            proposals.append(proposal)
            p_size = self.p_size
            players = 0
            for q in match[0]:
                lq, rq = left[q], right[q]
                right[lq] = rq
                left[rq] = lq
                taken[q] = 1
                players += p_size[q]
                blocked.pop(ids[layout[q]], None)
            total_players -= players
            if memo is not None:
                memo.matched(keys[i] if same else (), [mmr[q] for q in match[0]])
            if same:
                # The match lies in the anchor's partition: its tickets share the anchor's key.
                key = keys[i]
                for k in range(len(same)):
                    prefix = key[:k + 1]
                    prefix_players[k][prefix] -= players
                    if by_prefix and prefix_players[k][prefix] < most_smallest:
                        short.update(by_prefix[k][prefix])
            if on_proposal is not None:
                on_proposal(proposal)
        if memo is not None:
            memo.recalled += reused
        return Matching(proposals, blocked)

    # --- one anchor --------------------------------------------------------------------------

    def _columns(self) -> None:
        """What the filters read of each ticket, once per call (when the first anchor walks: a
        queue whose anchors are all refused at once never needs them), as one list per value
        by ticket index: latency per region (fixed region: 0 there, inf elsewhere; missing:
        inf), overlap lists (frozensets, None when absent), distance values (None when absent
        or not a finite number; "mmr": the MMR), role masks and lineup key (masks None: a
        player offers no role of the mode); then the walk's reads of them by position (a
        sentinel's entries are never read: its MMR is out of every window)."""
        el = self.eligible
        self._rmasks: dict = {}
        self.lat_cols = []
        if self.regions:
            latencies = [t.latencies for t in el]
            fixed = [(j, t.region) for j, t in enumerate(el) if t.region is not None]
        for region in self.regions:
            col = [_INF if (ms := lats.get(region)) is None else ms for lats in latencies]
            for j, home in fixed:
                col[j] = 0.0 if home == region else _INF
            self.lat_cols.append(col)
        self.over_cols = []
        for rule in self.overlaps:
            a = rule.attribute
            self.over_cols.append([frozenset(v) if isinstance(v := t.attributes.get(a), tuple) else None
                                   for t in el])
        self.dist_cols = []
        for rule in self.distances:
            a = rule.attribute
            if a == MMR_RULE:
                self.dist_cols.append([t.mmr for t in el])
            else:
                # A float is taken as is when finite (the common case, without a call).
                self.dist_cols.append([v if type(v := t.attributes.get(a)) is float and isfinite(v) else _number(v)
                                       for t in el])
        lineup = self.lineup
        by_offer: dict = {}
        role_masks = []
        role_keys = []
        # Each distinct lineup key a prime, so a multiset of keys (the greedy pick's, a search
        # node's) is the product of their primes, one int, equal exactly when the multisets are
        # (unique factorisation): a cheap key for the memo of lineup.fits. Its size grows with
        # the keys in the multiset (at most a match's tickets), not with the keys in the queue.
        key_units: dict = {}
        key_codes = []
        # Per lineup key (and by its code), the most tickets of it one match can hold: the
        # walk counts no more of a key than that toward its cap of candidates (_anchor).
        self.key_most = key_most = {}
        self.most_by_code = most_by_code = {}
        self.key_of_code = key_of_code = {}
        self.key_units = key_units
        for t in el:
            offer = (t.size, t.roles)
            try:
                found = by_offer.get(offer)
            except TypeError:  # roles not given as tuples: not memoised
                offer = found = None
            if found is None:
                masks = lineup.masks(t.size, t.roles)
                key = code = None
                if masks is not None:
                    key = lineup.key(t.size, masks)
                    code = key_units.get(key)
                    if code is None:
                        code = key_units[key] = _prime(len(key_units))
                        key_most[key] = most_by_code[code] = lineup.most(key)
                        key_of_code[code] = key
                found = (masks, key, code)
                if offer is not None:
                    by_offer[offer] = found
            role_masks.append(found[0])
            role_keys.append(found[1])
            key_codes.append(found[2])
        self.role_masks = role_masks
        self.role_keys = role_keys
        layout = self.layout
        sizes = self.sizes
        self.p_size = [sizes[i] for i in layout]
        self._one_region = b"\x01" * len(layout)  # the region bits of every ticket without latencies
        # Distance columns by position as contiguous doubles (the walk reads one per
        # neighbour), NaN for a missing value: `not abs(v - x) <= limit` then refuses it
        # without a test of its own (every comparison with NaN is false). Only the values of
        # neighbours that passed that test are read elsewhere.
        self.p_dist_cols = [array("d", [_NAN if (v := col[i]) is None else v for i in layout])
                            for col in self.dist_cols]
        # By position, the value of each dimension (MMR, then each distance rule): a _Cand's
        # `vals`, made only for the candidates that need one.
        self.dim_cols = (self.mmr, *self.p_dist_cols)
        self.p_over_cols = [[col[i] for i in layout] for col in self.over_cols]
        self.p_role_masks = [role_masks[i] for i in layout]
        self.p_role_keys = [role_keys[i] for i in layout]
        self.p_key_codes = [key_codes[i] for i in layout]
        self._fits_by_code: dict = {}  # key code -> self.lineup.fits(keys)

    def _rmasks_under(self, limit: float) -> list[int]:
        """By position, the ticket's regions (a bit per self.regions) within `limit`; memoised."""
        found = self._rmasks.get(limit)
        if found is None:
            by_ticket = [0] * len(self.eligible)
            for bit, col in enumerate(self.lat_cols):
                flag = 1 << bit
                by_ticket = [m | flag if ms <= limit else m for m, ms in zip(by_ticket, col)]
            found = self._rmasks[limit] = [by_ticket[i] for i in self.layout]
        return found

    def _rmask_of(self, i: int, limit: float) -> int:
        """Ticket i's regions within `limit`: its entry of _rmasks_under(limit), alone."""
        mask = 0
        for bit, col in enumerate(self.lat_cols):
            if col[i] <= limit:
                mask |= 1 << bit
        return mask

    def _anchor(self, i: int, p: int, w: float, lat_limit: float, dist_limits: Sequence[float], lo: int,
                smallest: int):
        if self.p_size is None:
            self._columns()
        self._reach = None
        rules = self.rules
        anchor = self.eligible[i]
        mmr, left, right = self.mmr, self.left, self.right
        latency_on = rules.latency is not None
        lims = (w, *dist_limits)
        # The anchor's own values; the first filter it fails itself (len(filters): none).
        nfilters = len(self.filter_names)
        own_fail = nfilters
        f = 0
        # Without latencies every ticket has the one same region bit: the walk's test passes.
        rmasks = self._rmasks_under(lat_limit) if latency_on else self._one_region
        amask = rmasks[p]
        if latency_on:
            if not amask and own_fail == nfilters:
                own_fail = f
            f += 1
        avalues = []
        for rule in self.overlaps:
            value = anchor.attributes.get(rule.attribute)
            listed = tuple(dict.fromkeys(value)) if isinstance(value, tuple) else ()
            avalues.append(listed)
            if not listed and own_fail == nfilters:
                own_fail = f
            f += 1
        adist = [col[i] for col in self.dist_cols]
        for v in adist:
            if v is None and own_fail == nfilters:
                own_fail = f
            f += 1
        amasks = self.role_masks[i]
        if amasks is None:
            return None, "roles"
        lineup = self.lineup
        undecided = lineup.undecided  # grows when the lineup's allowance runs out
        a = _Cand(p, anchor.size, tuple(map(getitem, self.dim_cols, repeat(p))), amask,
                  tuple((1 << len(v)) - 1 for v in avalues), self.role_keys[i], self.p_key_codes[p], amasks,
                  anchor.mmr)

        # Walk the MMR window nearest first, filtering pairwise.
        need = self.max_players
        walk_cap, pass_cap = _walk_limit(need), _pass_limit(need)
        players_by_fail = [0] * nfilters
        window_players = anchor.size
        latency_failed = 0  # players_by_fail[0] when latency_on, added at the end
        # The candidates as (position, shared regions, overlap masks). Their _Cand objects
        # are only made for the search below: a match the greedy pick fills is returned as
        # positions and common masks (_match's form), and most candidates are refused by the
        # greedy pick or belong to an anchor that fails.
        picks: list[tuple] = []
        # Per key code, how many more candidates of that key one match could still use (the
        # anchor's own key one fewer); below zero, how many the walk met beyond that. Only
        # candidates of a key with room count toward pass_cap (`useful`); the others are
        # candidates while there are fewer than pass_cap, else only their keys are kept
        # (`over_keys`: the sizes name "players" or "roles"). `run_key`, `run`: the key of the
        # last candidates that counted, and how many in a row, with no other passing
        # neighbour between them; `last_key`: the key of the last that counted (memo.py).
        room: dict = {}
        most_by_code = self.most_by_code
        a_code = self.p_key_codes[p]
        useful = 0
        over_keys: list = []
        run_key = last_key = None
        run = 0
        # The last visits in a row that change no answer of the line-up check by sizes and
        # roles (a filter turned them away, or they are of a key and, with roles, a size the
        # walk met enough of before them: _tail_of); `solos`: the solo candidates met so far.
        free = solos = passing = 0
        skipping = False
        roles_on = bool(lineup.k)
        solos_full = need - (anchor.size == 1)
        m = mmr[p]
        lp, rp = left[p], right[p]
        dl, dr = m - mmr[lp], mmr[rp] - m
        overlaps = self.overlaps
        over_cols = self.p_over_cols
        p_size, role_keys = self.p_size, self.p_role_keys
        dim_cols = self.dim_cols
        # Distance filters: (column, the anchor's value, limit); the first one unrolled below.
        dist_checks = tuple(zip(self.p_dist_cols, [_NAN if v is None else v for v in adist], dist_limits))
        first_dist = nfilters - len(dist_checks)  # the filter index of the first distance rule
        if dist_checks:
            dcol0, av0, dlim0 = dist_checks[0]
            more_dists = dist_checks[1:]
        # The greedy pick runs along the walk: it takes candidates in walk order and stops once
        # the match is full, so a full match found among the first candidates is exactly the
        # one it would find among all of them (and the one the search below would return
        # first): the rest of the walk and the search are skipped. The anchor alone being a
        # whole match is left to the path below (its own filters are checked there first).
        greedy = anchor.size < need
        g_players = anchor.size
        g_lows = list(a.vals)
        g_highs = list(a.vals)
        g_rm = amask
        g_om = list(a.omasks)
        g_keys = [a.key]
        g_code = self.p_key_codes[p]
        g_picked = [p]  # positions, the anchor's first
        g_refused: set = set()  # key codes
        fits = lineup.fits
        fits_by_code = self._fits_by_code
        key_codes = self.p_key_codes
        ndim = len(lims)
        walk_capped = False
        for visited in range(walk_cap):  # at the loop's end: the tickets the walk visited
            if dl <= dr:
                if dl > w:
                    break
                q = lp
                lp = left[lp]
                dl = m - mmr[lp]
            else:
                if dr > w:
                    break
                q = rp
                rp = right[rp]
                dr = mmr[rp] - m
            s = p_size[q]
            window_players += s
            if skipping:
                # Past pass_cap candidates and players enough past the filters (no count can
                # name a filter), a neighbour of a key met in full (and, with roles, a solo
                # once the solos fill a match) changes nothing, whether it passes or not.
                r = room.get(key_codes[q])
                if r is not None and r <= 0 and (not roles_on or (s == 1 and solos >= solos_full)):
                    free += 1
                    continue
            rmask = rmasks[q] & amask
            if not rmask:
                latency_failed += s
                free += 1
                continue
            omasks = ()
            if overlaps:
                f = 1 if latency_on else 0
                found_masks = []
                for k, col in enumerate(over_cols):
                    listed = col[q]
                    om = 0
                    if listed is not None:
                        for bit, v in enumerate(avalues[k]):
                            if v in listed:
                                om |= 1 << bit
                    if not om:
                        break
                    found_masks.append(om)
                    f += 1
                if f < first_dist:
                    players_by_fail[f] += s
                    free += 1
                    continue
                omasks = tuple(found_masks)
            if dist_checks:
                if not abs(dcol0[q] - av0) <= dlim0:  # NaN: a value missing on either side
                    players_by_fail[first_dist] += s
                    free += 1
                    continue
                if more_dists:
                    f = first_dist + 1
                    for col, av, limit in more_dists:
                        if not abs(col[q] - av) <= limit:
                            break
                        f += 1
                    if f < nfilters:
                        players_by_fail[f] += s
                        free += 1
                        continue
            key = role_keys[q]
            if key is None:
                free += 1
                continue  # can take no role: never in a match
            kc = key_codes[q]
            r = room.get(kc)
            if r is None:
                r = most_by_code[kc] - (kc == a_code)
            room[kc] = r - 1
            passing += s
            if r > 0:
                # A key the match can still use: the candidate counts toward the cap.
                free = 0
                useful += 1
                if s == 1:
                    solos += 1
                last_key = key
                if key == run_key:
                    run += 1
                else:
                    run_key, run = key, 1
                walk_ended = useful >= pass_cap
            else:
                # More of this key than one match can hold (a third tank-only solo where two
                # teams take a tank each): kept as a candidate while the candidates are fewer
                # than the cap, never counted toward it, so crowds of one kind cannot end the
                # walk before the kinds the match lacks.
                run_key = None
                free = free + 1 if not roles_on or (s == 1 and solos >= solos_full) else 0
                if s == 1:
                    solos += 1
                if len(picks) >= pass_cap:
                    over_keys.append(key)
                    skipping = passing >= smallest
                    continue
                walk_ended = False
            pick = (q, rmask, omasks)
            picks.append(pick)
            # One step of the greedy pick (_greedy_pick, not relaxed). A key the lineup refused
            # once stays refused: the greedy's keys only grow, and what does not fit with some
            # keys does not fit with more.
            if greedy and g_players + s <= need and g_rm & rmask and (
                    not overlaps or all(x & y for x, y in zip(g_om, omasks))) and kc not in g_refused:
                for d in range(ndim):
                    v = dim_cols[d][q]
                    h = g_highs[d]
                    lw = g_lows[d]
                    if (h if h > v else v) - (lw if lw < v else v) > lims[d]:
                        break
                else:
                    code = g_code * kc
                    ok = fits_by_code.get(code)
                    if ok is None:
                        nk = g_keys.copy()
                        insort(nk, key)
                        ok = fits(tuple(nk))
                        if ok is None:
                            # Out of steps: every lineup not yet decided is now undecided.
                            return None, "players"  # (the second pass may try it again)
                        fits_by_code[code] = ok
                    if not ok:
                        g_refused.add(kc)
                    else:
                        g_picked.append(q)
                        insort(g_keys, key)
                        g_code = code
                        g_players += s
                        for d in range(ndim):
                            v = dim_cols[d][q]
                            if v < g_lows[d]:
                                g_lows[d] = v
                            if v > g_highs[d]:
                                g_highs[d] = v
                        g_rm &= rmask
                        if overlaps:
                            g_om = [x & y for x, y in zip(g_om, omasks)]
                        if g_players == need:
                            return (g_picked, g_rm, tuple(g_om)), None
            if walk_ended:
                visited += 1
                break
        else:
            walk_capped = True
            visited = walk_cap
        if self.memo is not None:
            # The walk's reach (memo.py): the window when it ended at the window's edge (the
            # nearest neighbour not visited lies beyond it), else the farthest neighbour it
            # visited (every nearer one was). Walks through parties of a mode with roles are
            # not kept: placing them spends the lineup's steps.
            by_window = (dl if dl < dr else dr) > w
            self._reach = w if by_window else abs(mmr[q] - m)
            # A walk its caps ended (not the window's edge) visits the same neighbours, in the
            # same order, under any window that covers its reach. A failure found from them
            # before the search (a filter's name, or no line-up by sizes and roles: "roles",
            # "players") then holds under such a window too: the counts are the same, and the
            # greedy pick, the one other reader of the window here, could only have ended the
            # walk with a full match, which those answers say does not exist among the picks.
            # Answers of the search check spreads against the window: only for it.
            self._any_window = not by_window
            self._visited = visited
            # Answers found past the filters' counts hold whatever filter an unseen arrival
            # fails; a count's answer, when the arrival fails that filter or an earlier one
            # (the players left past the counted filter stay the same).
            self._counted = nfilters - 1
            self._tail = None
            self._reach_kept = (not rules.roles or self.total_players == len(self.sizes)
                                or (anchor.size == 1 and all(p_size[q] == 1 for q, _, _ in picks)))
        if latency_on:
            players_by_fail[0] += latency_failed
        capped = walk_capped or useful >= pass_cap
        if not capped and window_players < smallest:
            self._counted = -1  # any arrival in the window counts
            return None, MMR_RULE
        # Cumulative filters: players still in after filter k.
        remaining = window_players
        for k in range(nfilters):
            remaining -= players_by_fail[k]
            if own_fail == k:
                remaining -= anchor.size
            if remaining < smallest:
                self._counted = k
                return None, self.filter_names[k]
        # Sizes and roles alone (no collective condition) must make a match: cheap and memoised.
        keys = [role_keys[q] for q, _, _ in picks]
        composable = self._composable(a, keys, lo, smallest, self.lineup)
        if lineup.undecided != undecided:
            return None, "players"  # out of search steps (_ANCHOR_STEPS): undecided this tick
        if not composable:
            if self.memo is not None:
                # Ended by its cap of visits: arrivals push out as many last visits.
                # (Players past the filters: at least the candidates that passed them.)
                spare = min(free, (passing - smallest) // self.rules.team_size) if walk_capped else None
                self._tail = self._tail_of(a, room, useful >= pass_cap, run_key, run, last_key, spare)
            if self.rules.roles and self._composable(a, keys + over_keys, lo, smallest, self.sizes_only):
                return None, "roles"
            return None, "players"
        self._any_window = False  # the search below checks the MMR spread against w
        cands = self._cands(picks)
        chosen = None
        if not self._regions_or_spreads_rule_out(a, cands, lims, lo, smallest):
            chosen = self._window_pick(a, cands, lims)
            if chosen is None:
                chosen = self._search(a, cands, lims, lo, smallest, _NODE_BUDGET, relaxed=False)
        if chosen is not None:
            return self._match(chosen), None
        if lineup.undecided != undecided:
            return None, "players"
        return None, self._why(a, cands, lims, lo, smallest)

    def _tail_of(self, a: _Cand, room: dict, by_cap: bool, run_key, run: int, last_key,
                 spare: int | None) -> tuple:
        """For an answer of the line-up check by sizes and roles alone (memo.py), the arrivals
        that pass every filter and leave it, as (run key, run, full keys, last key, spare):

        - when the cap of candidates ended the walk: the key of the last candidates that
          counted toward it, and how many of them in a row (no other passing neighbour between
          them), no more than the match has room for; else (None, 0);
        - the keys the walk met at least as many candidates of as one match can hold besides
          the anchor (with roles: solo keys only, once the solos met fill the match);
        - the key of the last candidate that counted, when the cap of candidates ended the
          walk, else None;
        - when the cap of visits ended the walk: how many of its last visits in a row change
          no such answer (turned away by a filter, or of a full key) with players enough past
          the filters without them; else None.

        An arrival of a full key changes no count of keys or sizes capped at what a match
        holds: where it takes the place of a candidate that counted, one of its key met beyond
        what the match holds counts instead. So no more candidates count than before, and the
        walk ends where it did: at the window's edge; after the last candidate that counted,
        when that one is of another key; or at its cap of visits, one visit earlier, which
        drops a last visit that changes nothing either (`spare` of them). An arrival of the
        run's key, with room for it, counts, and the walk ends one candidate earlier: it drops
        the last that counted, of the same key, so the counts are the same."""
        most_by_code = self.most_by_code
        key_of_code = self.key_of_code
        a_code = a.code
        roles = bool(self.lineup.k)
        solos_full = False
        if roles:
            solos = sum(most_by_code[code] - (code == a_code) - r
                        for code, r in room.items() if key_of_code[code][0] == 1)
            solos_full = solos >= self.max_players - (a.size == 1)
        full = frozenset(key_of_code[code] for code, r in room.items()
                         if r <= 0 and (not roles or (solos_full and key_of_code[code][0] == 1)))
        if not by_cap or run_key is None:
            return (None, 0, full, last_key if by_cap else None, spare)
        return (run_key, min(run, room[self.key_units[run_key]]), full, last_key, spare)

    def _arrivals_leave_answer(self, i: int, lat_limit: float, dist_limits: Sequence[float],
                               arrivals: list[int], counted: int, visited: int, tail: tuple | None) -> int:
        """Would the walk of anchor `i` (under these limits) turn away each
        of these tickets (indices) at a filter no later than `counted`, or take it as a
        candidate of a key `tail` names (_tail_of: the key of its last candidates, in place of
        one of them; or a key it met as many of as a match holds), with room in its cap of
        visits for them all? Then its remembered answer holds with them (memo.py): the number
        of arrivals that took the places of last candidates; else -1. The filters are the
        walk's own, for one neighbour."""
        spare = tail[4] if tail is not None else None
        if (len(arrivals) > spare if spare is not None
                else visited + len(arrivals) >= _walk_limit(self.max_players)):
            return -1
        if self.p_size is None:
            self._columns()
        latency_on = self.rules.latency is not None
        # The region bits of the anchor and of each arrival alone, read from the latency
        # columns: building _rmasks_under's list for the whole queue would cost more than the
        # walk this saves, as young tickets' limits differ from anchor to anchor.
        amask = self._rmask_of(i, lat_limit) if latency_on else 0
        anchor = self.eligible[i]
        avalues = []
        for rule in self.overlaps:
            value = anchor.attributes.get(rule.attribute)
            avalues.append(tuple(dict.fromkeys(value)) if isinstance(value, tuple) else ())
        adist = [_NAN if (v := col[i]) is None else v for col in self.dist_cols]
        pos_of = self.pos_of
        nfilters = len(self.filter_names)
        candidates = full = 0
        for x in arrivals:
            q = pos_of[x]
            f = 0  # the first filter it fails (nfilters: none)
            if not latency_on or self._rmask_of(x, lat_limit) & amask:
                f = 1 if latency_on else 0
                for values, col in zip(avalues, self.p_over_cols):
                    listed = col[q]
                    if listed is None or not any(v in listed for v in values):
                        break
                    f += 1
                else:
                    for col, av, limit in zip(self.p_dist_cols, adist, dist_limits):
                        if not abs(col[q] - av) <= limit:
                            break
                        f += 1
            if f == nfilters:  # passed every filter: a candidate
                if tail is None:
                    return -1
                key = self.p_role_keys[q]
                if key in tail[2] and key != tail[3]:
                    full += 1  # of a key the walk met enough of: changes nothing (_tail_of)
                elif key == tail[0]:
                    candidates += 1
                else:
                    return -1
            elif f > counted:  # failed too late
                return -1
        if full and candidates:
            return -1  # both kinds at once: not worked out, the walk is done again
        return candidates if candidates <= (tail[1] if tail is not None else 0) else -1

    def _match(self, chosen: list[_Cand]):
        """_anchor's answer for a match of candidates: (positions, the regions all share, per
        overlap rule the anchor's values all share as a mask)."""
        rmask = chosen[0].rmask
        for c in chosen:
            rmask &= c.rmask
        omasks = []
        for k in range(len(self.overlaps)):
            common = chosen[0].omasks[k]
            for c in chosen:
                common &= c.omasks[k]
            omasks.append(common)
        return [c.pos for c in chosen], rmask, tuple(omasks)

    def _cands(self, picks) -> list[_Cand]:
        """The candidates of (position, rmask, omasks): rmask and omasks relative to the anchor."""
        p_size, p_role_keys, p_key_codes = self.p_size, self.p_role_keys, self.p_key_codes
        p_role_masks, mmr, dim_cols = self.p_role_masks, self.mmr, self.dim_cols
        # The values read column by column and zipped: cheaper than a map() tuple per candidate.
        vals = zip(*[[col[q] for q, _, _ in picks] for col in dim_cols])
        return [_Cand(q, p_size[q], v, rmask, omasks, p_role_keys[q], p_key_codes[q], p_role_masks[q], mmr[q])
                for (q, rmask, omasks), v in zip(picks, vals)]

    def _regions_or_spreads_rule_out(self, a: _Cand, cands: list[_Cand], lims, lo: int, smallest: int) -> bool:
        """True when no match can exist, found by the regions and the distance rules alone: a
        match plays in a region the anchor may play in, and its values of a distance rule lie
        in [x, x + limit] for x its smallest, a value <= the anchor's. So when, for every such
        region, the candidates that may play there cannot make a match by sizes and roles
        (_composable, exact but for its node budget, which answers True), or cannot within
        [x, x + limit] for any such x of some distance rule, the search would find none: it is
        skipped. A rule is tried when its values give few such x (the search costs more).
        At most _RULE_OUT_CHECKS _composable calls per anchor (many regions times many x
        could make thousands): past them the search is not skipped (it finds no match where
        this would have ruled one out, at a cost its node budget bounds)."""
        self._checks_left = _RULE_OUT_CHECKS
        if self.rules.latency is None:
            if len(lims) < 2:
                return False  # the candidates were found composable
            groups = [cands]
        else:
            groups = [[c for c in cands if c.rmask >> bit & 1]
                      for bit in range(len(self.regions)) if a.rmask >> bit & 1]
        for group in groups:
            if not self._group_rules_out(a, group, lims, lo, smallest):
                return False
        return True

    def _group_rules_out(self, a: _Cand, group: list[_Cand], lims, lo: int, smallest: int) -> bool:
        """_regions_or_spreads_rule_out for the candidates of one region (or all of them)."""
        if self.rules.latency is not None:
            self._checks_left -= 1
            if self._checks_left < 0:
                return False
            if not self._composable(a, [c.key for c in group], lo, smallest, self.lineup):
                return True
        for d in range(1, len(lims)):
            limit = lims[d]
            starts = _window_starts(a, group, d, limit)
            if starts is None:
                continue
            # Windows from the smallest start up: one that gains no candidate over the one
            # before holds a subset of it, so it cannot make a match either (skipped).
            ordered = sorted(group, key=lambda c: c.vals[d])
            values = [c.vals[d] for c in ordered]
            last_end = -1
            for x in starts:
                begin = bisect_left(values, x)
                end = begin
                while end < len(values) and values[end] - x <= limit:
                    end += 1
                if end == last_end:
                    continue
                last_end = end
                self._checks_left -= 1
                if self._checks_left < 0:
                    return False
                if self._composable(a, [c.key for c in ordered[begin:end]], lo, smallest, self.lineup):
                    break
            else:
                return True
        return False

    def _composable(self, a: _Cand, keys: list, lo: int, smallest: int, lineup: Lineup) -> bool:
        """Can the anchor and some of the candidates make a match by sizes and roles alone?

        Solo tickets with roles: Lineup.solos_fill, exact. Otherwise a search over how many
        tickets of each key to take, memoised by the capped key counts.
        """
        keyed = lineup is self.lineup
        # `keys`: the candidates' keys of self.lineup, (size, role masks) with roles, else the
        # size; the sizes-only lineup of a mode with roles counts their sizes.
        counts = Counter(keys) if keyed else Counter(map(itemgetter(0), keys))
        if keyed and lineup.k and a.size == 1 and all(key[0] == 1 for key in counts):
            # Exact; players beyond the slots of their offers (most) change no answer.
            most = self.key_most
            a_key = a.key
            return lineup.solos_fill(a.masks[0], [(mask, max(0, min(n, most[key] - (key == a_key))))
                                                  for key, n in counts.items() for (mask,) in (key[1],)])
        maxp = self.max_players
        a_key = a.key if keyed else a.size
        size_of = (lambda key: key[0]) if keyed and lineup.k else (lambda key: key)
        # Counts capped at what one match can hold besides the anchor: more of a key change
        # no answer (so the answer is a function of the capped counts: memo.py relies on it).
        most = self.key_most.get if keyed else (lambda size: maxp // size)
        types = sorted(((key, min(n, most(key) - (key == a_key))) for key, n in counts.items()),
                       key=lambda kn: (-size_of(kn[0]), kn[0]))
        types = [(key, n) for key, n in types if n > 0]
        signature = (id(lineup), a_key, lo, smallest, tuple(types))
        found = self._composable_memo.get(signature)
        if found is not None:
            return found
        fits = lineup.fits
        nodes = 0
        undecided = lineup.undecided
        # Players the types from t on can add: a branch that cannot reach `smallest` stops.
        more_players = [0] * (len(types) + 1)
        for t in range(len(types) - 1, -1, -1):
            key, n = types[t]
            more_players[t] = more_players[t + 1] + n * size_of(key)

        # With roles (parties: solos were answered above), a node spends a step of the
        # anchor's allowance, as placing parties does; sizes alone have few types and do not.
        allowance = self.allowance if lineup.k and lineup.allowance is not None else [_INF]

        def pick(t: int, keys: list, players: int) -> bool:
            nonlocal nodes
            nodes += 1
            allowance[0] -= 1
            if nodes > _RELAXED_BUDGET or allowance[0] < 0 or lineup.undecided != undecided:
                return True  # undecided: let the search try (or the caller see the allowance spent)
            if players >= smallest and fits(tuple(sorted(keys)), lo):
                return True
            if t == len(types) or players + more_players[t] < smallest:
                return False
            key, n = types[t]
            size = size_of(key)
            for take in range(min(n, (maxp - players) // size), -1, -1):
                more = keys + [key] * take
                if take and not fits(tuple(sorted(more))):
                    continue
                if pick(t + 1, more, players + take * size):
                    return True
            return False

        found = pick(0, [a_key], a.size)
        if allowance[0] < 0:
            lineup.undecided += 1  # the anchor sees it spent (_anchor)
        elif lineup.undecided == undecided:  # an answer the allowance cut short is not kept
            self._composable_memo[signature] = found
        return found

    def _why(self, a: _Cand, cands: list[_Cand], lims, lo: int, smallest: int) -> str:
        found = self._search(a, cands, lims, lo, smallest, _RELAXED_BUDGET, relaxed=True)
        if found is None:
            return "players"  # undecided within the budget
        for k, rule in enumerate(self.distances, 1):
            values = [c.vals[k] for c in found]
            if max(values) - min(values) > lims[k]:
                return rule.name
        values = [c.mmr for c in found]
        if max(values) - min(values) > lims[0]:
            return MMR_RULE
        if self.rules.latency is not None:
            common = a.rmask
            for c in found:
                common &= c.rmask
            if not common:
                return "latency"
        for k, rule in enumerate(self.overlaps):
            common = a.omasks[k]
            for c in found:
                common &= c.omasks[k]
            if not common:
                return rule.name
        return "players"

    # --- search ------------------------------------------------------------------------------

    def _greedy_pick(self, a: _Cand, cands: list[_Cand], lims, relaxed: bool):
        """Nearest first: each candidate that keeps every condition is taken, until the match
        is full. Returns (chosen, players, lineup keys, full)."""
        fits = self.lineup.fits
        maxp = self.max_players
        chosen = [a]
        players = a.size
        lows = list(a.vals)
        highs = list(a.vals)
        rm = a.rmask
        om = list(a.omasks)
        keys = [a.key]
        check_masks = not relaxed and self.rules.latency is not None
        check_over = not relaxed and bool(om)
        if players == maxp and fits(tuple(keys)):
            return chosen, players, keys, True
        for c in cands:
            s = c.size
            if players + s > maxp:
                continue
            if check_masks and not rm & c.rmask:
                continue
            if check_over and not all(x & y for x, y in zip(om, c.omasks)):
                continue
            vals = c.vals
            if any((h if h > v else v) - (l if l < v else v) > lim
                   for v, l, h, lim in zip(vals, lows, highs, lims)):
                continue
            nk = sorted(keys + [c.key])
            if not fits(tuple(nk)):
                continue
            chosen.append(c)
            keys = nk
            players += s
            for d, v in enumerate(vals):
                if v < lows[d]:
                    lows[d] = v
                if v > highs[d]:
                    highs[d] = v
            if check_masks:
                rm &= c.rmask
            if check_over:
                om = [x & y for x, y in zip(om, c.omasks)]
            if players == maxp:
                return chosen, players, keys, True
        return chosen, players, keys, False

    def _window_pick(self, a: _Cand, cands: list[_Cand], lims) -> list[_Cand] | None:
        """A full match by the greedy pick within a window of one distance rule: the
        candidates whose values lie in [x, x + limit], for each x from the smallest start up
        (a value <= the anchor's within the limit, as in _group_rules_out), rule after rule.
        Of the full matches found, the one of the least MMR spread (ties: the first); None
        when there is none (the search decides then).

        The greedy pick over every candidate fails mostly by taking, nearest first, a value of
        a distance rule far to one side of the anchor's: every candidate on the other side is
        then refused, though it would make a match without that one. Within a window, every
        spread of that rule is met by any choice, and nearest first usually fills the match.
        On the 5v5 role queue of bench_rules.py, 79% of the anchors whose greedy pick failed
        and that the search would have examined are matched here, among them most of those
        the search missed within its node budget: the windows and the search left take 0.13 s
        where the search alone took 0.29 s (docs/MATCH_RULES.md). A window costs one greedy
        pick over its candidates; a rule with more than _SPREAD_STARTS starts is not tried.
        With parties and roles, its line-up checks spend the anchor's steps as the search's
        do (an anchor out of them is undecided this tick, as with the search alone)."""
        need = self.max_players
        best: list[_Cand] | None = None
        best_spread = _INF
        for d in range(1, len(lims)):
            limit = lims[d]
            starts = _window_starts(a, cands, d, limit)
            if starts is None:
                continue
            values = sorted([c.vals[d] for c in cands])
            last_end = -1
            for x in starts:
                # A window that gains no candidate over the one before holds a subset of it.
                end = bisect_right(values, x + limit)
                if end == last_end:
                    continue
                last_end = end
                window = [c for c in cands if x <= c.vals[d] <= x + limit]
                if a.size + sum([c.size for c in window]) < need:
                    continue
                chosen, _players, _keys, full = self._greedy_pick(a, window, lims, False)
                if full:
                    mmrs = [c.mmr for c in chosen]
                    spread = max(mmrs) - min(mmrs)
                    if spread < best_spread:
                        best, best_spread = chosen, spread
        return best

    def _search(self, a: _Cand, cands: list[_Cand], lims, lo: int, smallest: int, budget: int,
                relaxed: bool) -> list[_Cand] | None:
        """The largest valid match holding `a` (a full one ends the search), or None."""
        fits = self.lineup.fits
        fits_by_code = self._fits_by_code
        maxp = self.max_players
        ndim = len(lims)
        if relaxed:
            lims = (_INF,) * ndim
        chosen, players, keys, full = self._greedy_pick(a, cands, lims, relaxed)
        if full:
            return chosen
        check_masks = not relaxed and self.rules.latency is not None
        check_over = not relaxed and bool(a.omasks)
        best: list[_Cand] | None = None
        best_players = smallest - 1
        if players >= smallest and fits(tuple(keys), lo):
            best, best_players = chosen, players
        # Exhaustive depth-first search over the candidates, within the node budget.
        n = len(cands)
        suffix = [0] * (n + 1)
        for j in range(n - 1, -1, -1):
            suffix[j] = suffix[j + 1] + cands[j].size
        if a.size + suffix[0] <= best_players:
            return best
        nodes = 0
        stack = [a]
        result = [best, best_players]

        # A node's keys are those of the stack: its multiset's code reads the memo of fits; the
        # sorted keys are only made when the memo lacks them or a match may be recorded.
        def rec(start: int, players: int, lows: tuple, highs: tuple, rm: int, om: tuple, code: int) -> bool:
            nonlocal nodes
            for j in range(start, n):
                if players + suffix[j] <= result[1]:
                    return False
                nodes += 1
                if nodes > budget:
                    return True
                c = cands[j]
                s = c.size
                np = players + s
                if np > maxp:
                    continue
                if check_masks and not rm & c.rmask:
                    continue
                if check_over and not all(x & y for x, y in zip(om, c.omasks)):
                    continue
                # The lineup before the spreads (the order of these checks changes no answer):
                # it refuses most nodes, and its memo read costs less than the spreads.
                ncode = code * c.code
                ok = fits_by_code.get(ncode)
                if ok is None:
                    ok = fits(tuple(sorted([x.key for x in stack] + [c.key])))
                    if ok is None:
                        return True  # out of search steps: the best match so far, if any
                    fits_by_code[ncode] = ok
                if not ok:
                    continue
                vals = c.vals
                # min(l, v) is l unless v < l, max(h, v) is h unless v > h.
                nl = tuple(map(min, lows, vals))
                nh = tuple(map(max, highs, vals))
                if any(map(lt, lims, map(sub, nh, nl))):
                    continue
                stack.append(c)
                if np > result[1] and np >= smallest and fits(tuple(sorted([x.key for x in stack])), lo):
                    result[0] = list(stack)
                    result[1] = np
                    if np == maxp:
                        return True
                nrm = rm & c.rmask if check_masks else rm
                nom = tuple(x & y for x, y in zip(om, c.omasks)) if check_over else om
                if rec(j + 1, np, nl, nh, nrm, nom, ncode):
                    return True
                stack.pop()
            return False

        try:
            rec(0, a.size, tuple(a.vals), tuple(a.vals), a.rmask, tuple(a.omasks), a.code)
        finally:
            rec = None  # it refers to itself: unbound, reference counting frees its cycle
        return result[0]

    # --- the proposal ------------------------------------------------------------------------

    def _propose(self, positions: list[int], common: int, omasks: tuple, lo: int) -> Proposal:
        """The proposal of the tickets at `positions` (the anchor's first), which share the
        regions `common` and, per overlap rule, the anchor's values in omasks[k]."""
        layout = self.layout
        ticket_ids = self.ids
        mmr = self.mmr
        ids = [ticket_ids[layout[q]] for q in positions]
        anchor = self.eligible[layout[positions[0]]]
        mmrs = [mmr[q] for q in positions]
        mmrs[0] = anchor.mmr  # the ticket's own value, as given (the column holds doubles)
        p_size, p_role_masks = self.p_size, self.p_role_masks
        members, roles = self.lineup.arrange([p_size[q] for q in positions], [p_role_masks[q] for q in positions],
                                             mmrs, lo)
        teams = tuple([tuple(map(ids.__getitem__, team)) for team in members])
        region = None
        if self.rules.latency is not None:
            if common and not common & (common - 1):  # one region common to all: no latencies to compare
                region = self.regions[common.bit_length() - 1]
            else:
                best = _INF
                for bit, name in enumerate(self.regions):
                    if common >> bit & 1:
                        # Every ticket here plays in this region: a fixed region's latency is 0.
                        col = self.lat_cols[bit]
                        worst = max([col[layout[q]] for q in positions])
                        if worst < best:
                            best, region = worst, name
        attributes = {}
        for rule, shared in zip(self.overlaps, omasks):
            listed = tuple(dict.fromkeys(anchor.attributes[rule.attribute]))
            attributes[rule.attribute] = listed[(shared & -shared).bit_length() - 1]
        role_map = {}
        if roles is not None:
            role_map = dict(zip(ids, roles))
        return Proposal(teams, max(mmrs) - min(mmrs), region, role_map, attributes)
