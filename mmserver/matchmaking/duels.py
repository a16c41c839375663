"""1v1: as many pairs as the rules allow, then the least total MMR spread.

A pair is allowed when its MMR gap is within the window of its older ticket. Windows only widen
with waiting, so that is the wider of the two windows: in MMR order, ticket i may pair with j
when |m_i - m_j| <= max(w_i, w_j). Two facts about that rule make the search cheap:

- if i and k may pair, any ticket j between them may pair with i or with k (the wider window
  covers j too). So in a best matching no pair spans an unmatched ticket: swapping the
  unmatched one in keeps the count and shrinks the spread;
- on a line, pairing the matched tickets consecutively (1st with 2nd, 3rd with 4th, ...) has
  the least spread of any pairing of them, allowed or not: every gap between the (2k-1)th and
  the 2kth is crossed by at least one pair of any pairing.

The search, in three steps:

1. a dynamic program over the MMR order pairs neighbours only (each ticket is left out, or
   paired with the one before it): most pairs, then least spread. When it leaves nobody out it
   is a best matching, by the second fact; so it is when it leaves one ticket out of an odd
   queue and its spread is the least that any pairing of all tickets but one could have. That
   is the usual case in a busy queue, and costs one pass;
2. otherwise, the queue is cut where no allowed pair crosses (connected groups, contiguous in
   MMR order), and each group where a ticket was left out is searched exactly: left to right,
   each ticket left out or paired with any later allowed partner, memoised on which later
   tickets are taken. The wide windows of old tickets can make a best matching need crossed
   pairs, which only this search finds. Among equal counts and spreads it prefers matching
   the older tickets (lexicographically, oldest first);
3. a group too large for that search (more than `_EXACT_MAX` tickets or `_EXACT_STATES`
   states) keeps the neighbours-only result when step 1's proof holds for it, and otherwise
   the better of that and the previous matcher's pairing (oldest first, each ticket takes its
   nearest allowed neighbour), so it is never worse than before.

Proposals come in the order of their older ticket (ties by ticket id), that ticket first.
"""
from __future__ import annotations

from array import array
from itertools import accumulate, islice
from operator import add, sub
from typing import Callable

from mmserver.matchmaking.model import Proposal
from mmserver.matchmaking.pool import Pool
from mmserver.matchmaking.rules import MatchRules

_EXACT_MAX = 48  # tickets in one group searched exactly
_EXACT_STATES = 20_000  # memoised states per group before giving up on the exact search
_TOLERANCE = 1e-12  # relative: spreads summed in different orders may differ in the last bits


class _TooBig(Exception):
    pass


def propose_duels(pool: Pool, rules: MatchRules, now: float,
                  on_proposal: Callable[[Proposal], None] | None = None) -> list[Proposal]:
    base, growth, cap = rules.mmr_window, rules.mmr_window_growth_per_s, rules.mmr_window_max
    ids, mmr, enqueued, anchors = pool.ids, pool.mmr, pool.enqueued, pool.anchors
    n = len(anchors)
    gaps = list(map(sub, islice(mmr, 2, n + 1), islice(mmr, 1, n)))  # gaps[t - 2]: t - 1 to t

    # 1. Neighbours only. (k1, s1): pairs and spread over positions 1..t-1, (k0, s0) over
    # 1..t-2; paired[t]: t pairs with t - 1. This loop runs once per queued ticket.
    paired = bytearray(n + 1)
    narrowest = base if base < cap else cap  # every window is at least this wide
    k0 = k1 = 0
    s0 = s1 = 0.0
    t = 1
    for g in gaps:
        t += 1
        if g > narrowest:
            # window(rules, waited) of the older ticket, inlined.
            a, b = enqueued[t], enqueued[t - 1]
            waited = now - (a if a < b else b)
            x = base + growth * waited if waited > 0 else base
            if g > x or g > cap:
                k0, s0 = k1, s1
                continue
        k = k0 + 1
        s = s0 + g
        if k > k1 or (k == k1 and s < s1):
            paired[t] = 1
            k0, s0, k1, s1 = k1, s1, k, s
        else:
            k0, s0 = k1, s1
    if k1 == 0:
        # No neighbours may pair, so no tickets at all may: were i and k allowed with no
        # allowed pair closer than them, the ticket after i would make one (first fact).
        return []
    partner = array("l", [0]) * (n + 2)
    t = n
    while t >= 2:
        if paired[t]:
            partner[t] = t - 1
            partner[t - 1] = t
            t -= 2
        else:
            t -= 1
    if 2 * k1 < n and not (2 * k1 == n - 1 and _proven(s1, gaps)):
        _improve(pool, rules, now, partner)

    # Proposals in the order of their older ticket, as the callers expect; each one handed on
    # as it is made, so the caller's claims overlap the rest of this loop and its own work.
    proposals = []
    append = proposals.append
    seen = bytearray(n + 2)
    for p in anchors:
        q = partner[p]
        if q and not seen[p]:
            seen[p] = seen[q] = 1
            proposal = Proposal(((ids[p],), (ids[q],)), abs(mmr[q] - mmr[p]))
            append(proposal)
            if on_proposal is not None:
                on_proposal(proposal)
    return proposals


def _least_with_one_out(gaps: list[float]) -> tuple[float, bool]:
    """Least spread of any pairing of all tickets but one (an odd number), allowed or not, and
    whether only one ticket left out reaches it.

    Leaving out the s-th ticket (1-based) of n, the rest pairs consecutively: (1,2), (3,4), ...
    before it and (s+1,s+2), ... after it. An even s is never better than s - 1 (its pairing
    holds the pair (s-1, s+1) where s - 1 left out holds (s, s+1)), so s is odd: the pairs
    before it are the gaps 1, 3, ... and those after it the gaps s+1, s+3, ... .
    """
    before = [0.0, *accumulate(gaps[0::2])]
    odd = gaps[1::2]
    after = [*accumulate(reversed(odd), initial=0.0)]
    after.reverse()
    totals = list(map(add, before, after))
    least = min(totals)
    near = least + _TOLERANCE * (1.0 + least)
    return least, sum(1 for x in totals if x <= near) == 1


def _proven(spread: float, gaps: list[float]) -> bool:
    """Whether pairing all of an odd number of tickets but one at this spread is the one best
    matching: the least any such pairing could have, reached by leaving out one ticket only
    (a tie would leave the choice among equals to the search, which prefers older tickets)."""
    least, unique = _least_with_one_out(gaps)
    return unique and spread <= least + _TOLERANCE * (1.0 + least)


def _improve(pool: Pool, rules: MatchRules, now: float, partner) -> None:
    """Steps 2 and 3: rework each connected group where the neighbours-only pairing left a
    ticket out, unless its result is already proven best.

    This runs on every tick that leaves a ticket unmatched (a large queue with narrow windows
    leaves most), so the cuts are found with whole-list operations, not a loop per ticket.
    """
    base, growth, cap = rules.mmr_window, rules.mmr_window_growth_per_s, rules.mmr_window_max
    mmr, enqueued = pool.mmr, pool.enqueued
    n = len(pool.anchors)
    values = mmr[1:n + 1]
    windows = [min(cap, base + growth * (now - e) if now > e else base) for e in islice(enqueued, 1, n + 1)]
    # Highest MMR reached from positions 1..t, lowest reached from t..n (index t - 1): no
    # allowed pair crosses between t and t + 1 when neither reaches the other side.
    up = list(accumulate(map(add, values, windows), max))
    down = list(accumulate(map(sub, reversed(values), reversed(windows)), min))
    down.reverse()
    cuts = [0]
    cuts += [t for t, high, above, low, here in zip(range(1, n), up, islice(values, 1, None), islice(down, 1, None), values)
             if high < above and low > here]
    cuts.append(n)
    w = [0.0, *windows, 0.0]
    for before, hi in zip(cuts, islice(cuts, 1, None)):
        if hi - before >= 2:
            _settle(pool, rules, now, w, partner, before + 1, hi)


def _settle(pool, rules, now, w, partner, lo: int, hi: int) -> None:
    size = hi - lo + 1
    left_out = [t for t in range(lo, hi + 1) if not partner[t]]
    if not left_out:
        return
    mmr = pool.mmr
    if len(left_out) == 1 and _proven(_spread_of(mmr, partner, lo, hi), [mmr[t + 1] - mmr[t] for t in range(lo, hi)]):
        return
    positions = list(range(lo, hi + 1))
    try:
        if size > _EXACT_MAX:
            raise _TooBig
        pairs = _exact(positions, pool, w)
    except _TooBig:
        pairs = _better(_nearest_pairs(pool, rules, now, lo, hi), _current(partner, lo, hi), mmr)
    for t in positions:
        partner[t] = 0
    for p, q in pairs:
        partner[p] = q
        partner[q] = p


def _current(partner, lo: int, hi: int) -> list[tuple[int, int]]:
    return [(t, partner[t]) for t in range(lo, hi + 1) if partner[t] > t]


def _spread_of(mmr, partner, lo: int, hi: int) -> float:
    return sum(mmr[q] - mmr[p] for p, q in _current(partner, lo, hi))


def _better(a: list[tuple[int, int]], b: list[tuple[int, int]], mmr) -> list[tuple[int, int]]:
    spread_a = sum(abs(mmr[q] - mmr[p]) for p, q in a)
    spread_b = sum(abs(mmr[q] - mmr[p]) for p, q in b)
    if len(a) != len(b):
        return a if len(a) > len(b) else b
    return a if spread_a < spread_b else b


def _exact(positions: list[int], pool: Pool, w) -> list[tuple[int, int]]:
    """Most pairs, then least spread, then the oldest tickets matched (lexicographically)."""
    mmr, enqueued, ids = pool.mmr, pool.enqueued, pool.ids
    k = len(positions)
    m = [mmr[p] for p in positions]
    ww = [w[p] for p in positions]
    later = [[j for j in range(i + 1, k) if m[j] - m[i] <= ww[i] or m[j] - m[i] <= ww[j]] for i in range(k)]
    # Weights that make "older tickets matched" a sum: the oldest outweighs all younger ones.
    by_age = sorted(range(k), key=lambda i: (enqueued[positions[i]], ids[positions[i]]))
    age = [0] * k
    for r, i in enumerate(by_age):
        age[i] = 1 << (k - 1 - r)
    memo: dict[tuple[int, int], tuple[int, float, int, int]] = {}

    def best(i: int, taken: int) -> tuple[int, float, int, int]:
        while i < k and taken >> i & 1:
            i += 1
        if i >= k:
            return (0, 0.0, 0, -1)
        taken &= -(1 << i)
        key = (i, taken)
        found = memo.get(key)
        if found is not None:
            return found
        if len(memo) >= _EXACT_STATES:
            raise _TooBig
        c, s, a, _ = best(i + 1, taken)
        result = (c, s, a, -1)
        for j in later[i]:
            if taken >> j & 1:
                continue
            c2, s2, a2, _ = best(i + 1, taken | 1 << j)
            c2 += 1
            s2 += m[j] - m[i]
            a2 += age[i] + age[j]
            if c2 > result[0] or (c2 == result[0] and (s2 < result[1] or (s2 == result[1] and a2 > result[2]))):
                result = (c2, s2, a2, j)
        memo[key] = result
        return result

    pairs = []
    i, taken = 0, 0
    while True:
        while i < k and taken >> i & 1:
            i += 1
        if i >= k:
            break
        j = best(i, taken)[3]
        if j >= 0:
            pairs.append((positions[i], positions[j]))
            taken |= 1 << j
        i += 1
    return pairs


def _nearest_pairs(pool: Pool, rules: MatchRules, now: float, lo: int, hi: int) -> list[tuple[int, int]]:
    """The previous matcher on positions lo..hi: oldest first, each takes its nearest allowed
    unmatched neighbour."""
    base, growth, cap = rules.mmr_window, rules.mmr_window_growth_per_s, rules.mmr_window_max
    mmr, enqueued = pool.mmr, pool.enqueued
    left = {t: t - 1 for t in range(lo, hi + 1)}
    right = {t: t + 1 for t in range(lo, hi + 1)}
    value = {t: mmr[t] for t in range(lo - 1, hi + 2)}
    value[lo - 1] = -float("inf")
    value[hi + 1] = float("inf")
    taken = set()
    pairs = []
    for p in pool.anchors:
        if not lo <= p <= hi or p in taken:
            continue
        waited = now - enqueued[p]
        wp = base + growth * waited if waited > 0 else base
        if wp > cap:
            wp = cap
        lp, rp = left[p], right[p]
        dl = value[p] - value[lp]
        dr = value[rp] - value[p]
        if dr <= dl:
            if dr > wp:
                continue
            q = rp
        else:
            if dl > wp:
                continue
            q = lp
        for x in (p, q):
            lx, rx = left[x], right[x]
            if rx <= hi:
                left[rx] = lx
            if lx >= lo:
                right[lx] = rx
        taken.update((p, q))
        pairs.append((min(p, q), max(p, q)))
    return pairs
