"""Forming match proposals from the queued tickets of one mode in one region.

The tickets are sorted once by MMR into a doubly linked list (pool.Pool); a ticket leaves the
list when it is matched, so an anchor finds its nearest unmatched neighbours in O(1) each. Anchors are taken oldest first
(ties by ticket id). An anchor that cannot be matched now is skipped: its window widens with
time, and it does not block younger anchors.

The spread of a proposal is kept within the anchor's window. Any older ticket in the proposal
has waited longer and so has a window at least as wide: the spread is within the window of the
proposal's oldest ticket, as the rules require.

Three searches, picked once per call:
- 1v1: as many pairs as the rules allow, then the least total spread (duels.py; not anchored,
  so the rest of this description is about the other two);
- solo tickets only: the `players_per_match` consecutive tickets around the anchor with the
  smallest spread (exhaustive: the neighbourhood holds every candidate set);
- parties: the nearest tickets first, until the sizes at hand can make a whole match
  (packing.find_composition, memoised by size counts); should that set spread too wide, every
  MMR range of width <= window around the anchor is tried. To bound the work when a queue is
  full of sizes that do not fit together, an anchor is skipped at once when the sizes left in
  the whole queue cannot complete a match with it, and otherwise looks at no more than its
  `_candidate_limit` nearest tickets (and as many on each side for the range search). Below
  that limit the search is exhaustive: the anchor is matched whenever it can be.
"""
from __future__ import annotations

from typing import Callable, Sequence

from mmserver.matchmaking.constrained import propose_constrained
from mmserver.matchmaking.memo import FailureMemo
from mmserver.matchmaking.duels import propose_duels
from mmserver.matchmaking.model import Matching, Proposal, QueuedTicket
from mmserver.matchmaking.packing import find_composition
from mmserver.matchmaking.pool import Pool
from mmserver.matchmaking.rules import MatchRules
from mmserver.matchmaking.teams import balance

_INF = float("inf")
_MISSING = object()


def _candidate_limit(players_per_match: int) -> int:
    return 8 * players_per_match + 16


def match_queue(tickets: Sequence[QueuedTicket], rules: MatchRules, now: float, *,
                on_proposal: Callable[[Proposal], None] | None = None,
                memo: FailureMemo | None = None) -> Matching:
    """One tick of matching for a mode: proposals, and why each unmatched ticket waits.

    Plain modes (`rules.plain`) use the fast searches of `propose_matches`; an unmatched
    eligible ticket of theirs is blocked by "mmr" (the MMR window is their only rule) when the
    unmatched tickets, whatever their MMRs, hold a whole match with it (party sizes that fill
    the teams exactly), else by "players" (too few players, or parties that do not fit
    together: _waiting_reasons). Every other mode goes to
    constrained.propose_constrained, which documents its semantics and blocked_by order.
    Either way each proposal goes to `on_proposal` as soon as it is final (in the order of the
    result's list), so a caller may act on it while the rest of the queue is matched (1v1
    pairs only once the whole queue is paired; the others one by one). `memo`: the queue's
    FailureMemo, kept by the caller from tick to tick (modes with rules; memo.py).
    """
    if not rules.plain:
        return propose_constrained(tickets, rules, now, on_proposal, memo)
    proposals = propose_matches(tickets, rules, now, on_proposal)
    matched = {ticket_id for proposal in proposals for team in proposal.teams for ticket_id in team}
    team_size = rules.team_size
    waiting = [t for t in tickets if 1 <= t.size <= team_size and t.ticket_id not in matched]
    reasons = _waiting_reasons([t.size for t in waiting], rules)
    return Matching(proposals, {t.ticket_id: reasons[t.size] for t in waiting})


def _waiting_reasons(sizes: Sequence[int], rules: MatchRules) -> list[str]:
    """By party size, why an unmatched ticket of a plain mode waits: "mmr" when these tickets'
    sizes (the ticket's own among them) can make a whole match with it, else "players". One
    count per ticket, then at most team_size searches over the counts capped at what one
    match can hold (packing.find_composition)."""
    team_size, teams = rules.team_size, rules.teams
    need = rules.players_per_match
    reasons = ["players"] * (team_size + 1)
    if sum(sizes) < need:
        return reasons
    counts = [0] * (team_size + 1)
    for s in sizes:
        counts[s] += 1
    capped = [0] + [min(counts[s], need // s) for s in range(1, team_size + 1)]
    for s in range(1, team_size + 1):
        if counts[s] and find_composition(capped, s, team_size, teams) is not None:
            reasons[s] = "mmr"
    return reasons


def propose_matches(tickets: Sequence[QueuedTicket], rules: MatchRules, now: float,
                    on_proposal: Callable[[Proposal], None] | None = None) -> list[Proposal]:
    """Match proposals, oldest anchors first; each ticket appears in at most one. Each also
    goes to `on_proposal`, in the list's order, as soon as it is final.

    All tickets must come from one mode and one region, with distinct ids. Tickets whose size
    is outside 1..team_size can never be placed and are left out.
    """
    team_size = rules.team_size
    eligible = [t for t in tickets if 1 <= t.size <= team_size]
    if sum(t.size for t in eligible) < rules.players_per_match:
        return []
    pool = Pool(eligible)
    if team_size == 1 and rules.teams == 2:
        return propose_duels(pool, rules, now, on_proposal)
    if all(t.size == 1 for t in eligible):
        return _solos(pool, rules, now, on_proposal)
    return _parties(pool, rules, now, on_proposal)


def _solos(pool: Pool, rules: MatchRules, now: float,
           on_proposal: Callable[[Proposal], None] | None) -> list[Proposal]:
    base, growth, cap = rules.mmr_window, rules.mmr_window_growth_per_s, rules.mmr_window_max
    team_size, teams = rules.team_size, rules.teams
    need = rules.players_per_match
    ids, mmr, enqueued = pool.ids, pool.mmr, pool.enqueued
    left, right, taken = pool.left, pool.right, pool.taken
    ones = [1] * need
    proposals = []
    for p in pool.anchors:
        if taken[p]:
            continue
        # window(rules, waited), inlined: this loop runs once per queued ticket.
        waited = now - enqueued[p]
        w = base + growth * waited if waited > 0 else base
        if w > cap:
            w = cap
        m = mmr[p]
        low, high = m - w, m + w
        below = []
        x = left[p]
        while len(below) < need - 1 and mmr[x] >= low:
            below.append(x)
            x = left[x]
        above = []
        x = right[p]
        while len(above) < need - 1 and mmr[x] <= high:
            above.append(x)
            x = right[x]
        if len(below) + len(above) + 1 < need:
            continue
        below.reverse()
        run = below + [p] + above
        at = len(below)
        best_start, best_spread = -1, _INF
        for start in range(max(0, at - need + 1), min(at, len(run) - need) + 1):
            spread = mmr[run[start + need - 1]] - mmr[run[start]]
            if spread < best_spread:
                best_start, best_spread = start, spread
        if best_spread > w:
            continue
        chosen = run[best_start:best_start + need]
        pool.remove(chosen)
        split = balance([mmr[x] for x in chosen], ones, team_size, teams)
        proposal = Proposal(tuple(tuple(ids[chosen[i]] for i in team) for team in split), best_spread)
        proposals.append(proposal)
        if on_proposal is not None:
            on_proposal(proposal)
    return proposals


def _parties(pool: Pool, rules: MatchRules, now: float,
             on_proposal: Callable[[Proposal], None] | None) -> list[Proposal]:
    base, growth, cap = rules.mmr_window, rules.mmr_window_growth_per_s, rules.mmr_window_max
    team_size, teams = rules.team_size, rules.teams
    need = rules.players_per_match
    limit = _candidate_limit(need)
    ids, mmr, size, enqueued = pool.ids, pool.mmr, pool.size, pool.enqueued
    left, right, taken = pool.left, pool.right, pool.taken
    # Counts of each size, capped at what one match could use, encoded as one integer.
    most = [0] + [need // s for s in range(1, team_size + 1)]
    radix = [0] * (team_size + 2)
    radix[1] = 1
    for s in range(1, team_size + 1):
        radix[s + 1] = radix[s] * (most[s] + 1)
    compositions: list[dict[int, tuple[int, ...] | None]] = [{} for _ in range(team_size + 1)]
    # The same capped counts over every unmatched ticket: once they cannot complete a match for
    # an anchor size, anchors of that size are skipped without a search.
    in_queue = [0] * (team_size + 1)
    for x in pool.anchors:
        in_queue[size[x]] += 1
    left_in_queue = [min(c, top) for c, top in zip(in_queue, most)]
    queue_key = sum(c * r for c, r in zip(left_in_queue, radix))

    def composition(counts: list[int], key: int, anchor_size: int) -> tuple[int, ...] | None:
        known = compositions[anchor_size]
        found = known.get(key, _MISSING)
        if found is _MISSING:
            found = known[key] = find_composition(counts, anchor_size, team_size, teams)
        return found  # type: ignore[return-value]

    proposals = []
    for p in pool.anchors:
        if taken[p]:
            continue
        # window(rules, waited), inlined: this loop runs once per queued ticket.
        waited = now - enqueued[p]
        w = base + growth * waited if waited > 0 else base
        if w > cap:
            w = cap
        anchor_size = size[p]
        if composition(left_in_queue, queue_key, anchor_size) is None:
            continue
        m = mmr[p]
        counts = [0] * (team_size + 1)
        counts[anchor_size] = 1
        key = radix[anchor_size]
        nearest = []
        lp, rp = left[p], right[p]
        dl = m - mmr[lp]
        dr = mmr[rp] - m
        found = None
        while len(nearest) < limit:
            if dl <= dr:
                if dl > w:
                    break
                x = lp
                lp = left[lp]
                dl = m - mmr[lp]
            else:
                if dr > w:
                    break
                x = rp
                rp = right[rp]
                dr = mmr[rp] - m
            nearest.append(x)
            s = size[x]
            if counts[s] < most[s]:
                counts[s] += 1
                key += radix[s]
                found = composition(counts, key, anchor_size)
                if found is not None:
                    break
        chosen = None
        if found is not None:
            chosen = _pick(found, p, nearest, size)
            if _spread(chosen, mmr) > w:
                chosen = _scan_ranges(p, w, limit, pool, most, radix, composition)
        if chosen is None:
            continue
        pool.remove(chosen)
        for x in chosen:
            s = size[x]
            in_queue[s] -= 1
            if in_queue[s] < left_in_queue[s]:
                left_in_queue[s] = in_queue[s]
                queue_key -= radix[s]
        split = balance([mmr[x] for x in chosen], [size[x] for x in chosen], team_size, teams)
        proposal = Proposal(tuple(tuple(ids[chosen[i]] for i in team) for team in split), _spread(chosen, mmr))
        proposals.append(proposal)
        if on_proposal is not None:
            on_proposal(proposal)
    return proposals


def _spread(positions: Sequence[int], mmr: Sequence[float]) -> float:
    values = [mmr[x] for x in positions]
    return max(values) - min(values)


def _pick(found: tuple[int, ...], anchor: int, nearest: Sequence[int], size: Sequence[int]) -> list[int]:
    """The anchor plus, for each size, the first tickets of that size in `nearest`."""
    wanted = list(found)
    wanted[size[anchor]] -= 1
    missing = sum(wanted)
    chosen = [anchor]
    for x in nearest:
        if missing == 0:
            break
        s = size[x]
        if wanted[s]:
            wanted[s] -= 1
            missing -= 1
            chosen.append(x)
    return chosen


def _scan_ranges(p, w, limit, pool: Pool, most, radix, composition) -> list[int] | None:
    """Try every MMR range [lo, lo + w] that holds the anchor, lowest first.

    Used only when the nearest tickets fit together but spread too wide; it is exhaustive over
    the `limit` tickets on each side.
    """
    mmr, size, left, right = pool.mmr, pool.size, pool.left, pool.right
    m = mmr[p]
    below = []
    x = left[p]
    while len(below) < limit and mmr[x] >= m - w:
        below.append(x)
        x = left[x]
    above = []
    x = right[p]
    while len(above) < limit and mmr[x] <= m + w:
        above.append(x)
        x = right[x]
    below.reverse()
    run = below + [p] + above
    at = len(below)
    anchor_size = size[p]
    counts = [0] * len(most)
    end = -1  # run[start..end] is the current range
    for start in range(0, at + 1):
        if start > 0:
            counts[size[run[start - 1]]] -= 1
        while end + 1 < len(run) and mmr[run[end + 1]] - mmr[run[start]] <= w:
            end += 1
            counts[size[run[end]]] += 1
        capped = [min(c, top) for c, top in zip(counts, most)]
        key = sum(c * r for c, r in zip(capped, radix))
        found = composition(capped, key, anchor_size)
        if found is not None:
            in_range = sorted(run[start:end + 1], key=lambda y: abs(mmr[y] - m))
            return _pick(found, p, [y for y in in_range if y != p], size)
    return None
