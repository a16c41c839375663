"""The queued tickets of one matcher call, in MMR order, as a doubly linked list over arrays.

Sentinels with MMR -inf and +inf at both ends mean a walk to the nearest neighbour never needs
a bounds check: their distance exceeds any finite window.
"""
from __future__ import annotations

from array import array
from itertools import compress, count, islice
from operator import eq, ne
from typing import Sequence

from mmserver.matchmaking.model import QueuedTicket

_INF = float("inf")


class Pool:
    """The unmatched tickets in MMR order, positions 1..n; 0 and n + 1 are sentinels.

    Fields are parallel arrays indexed by position; `left`/`right` link the unmatched tickets,
    `taken` marks matched ones and `anchors` lists positions oldest ticket first.
    """

    __slots__ = ("ids", "mmr", "size", "enqueued", "left", "right", "taken", "anchors")

    def __init__(self, tickets: list[QueuedTicket]) -> None:
        # Read each field once in the caller's order (sequential memory), then gather by index:
        # walking the ticket objects in MMR order instead costs cache misses on big queues.
        # Sort keys are plain floats, which CPython compares much faster than tuples. Equal
        # MMRs keep the caller's order; equal enqueue times are put in ticket-id order below.
        n = len(tickets)
        mmrs = [t.mmr for t in tickets]
        enqueued_in = [t.enqueued_at for t in tickets]
        by_mmr = sorted(range(n), key=mmrs.__getitem__)
        ids_in = [t.ticket_id for t in tickets]
        sizes_in = [t.size for t in tickets]
        self.ids = ids = [""] + [ids_in[i] for i in by_mmr] + [""]
        # Contiguous doubles: neighbours' MMRs share cache lines, unlike scattered float objects.
        self.mmr = array("d", [-_INF] + [mmrs[i] for i in by_mmr] + [_INF])
        self.size = [0] + [sizes_in[i] for i in by_mmr] + [0]
        self.enqueued = enqueued = array("d", [0.0] + [enqueued_in[i] for i in by_mmr] + [0.0])
        self.left = array("l", range(-1, n + 1))
        self.right = array("l", range(1, n + 3))
        self.taken = bytearray(n + 2)
        position = [0] * n
        for p, i in enumerate(by_mmr, 1):
            position[i] = p
        anchors = [position[i] for i in sorted(range(n), key=enqueued_in.__getitem__)]
        _order_ties(anchors, enqueued, ids)
        self.anchors = anchors  # positions, oldest ticket first

    def remove(self, positions: Sequence[int]) -> None:
        left, right, taken = self.left, self.right, self.taken
        for p in positions:
            lp, rp = left[p], right[p]
            right[lp] = rp
            left[rp] = lp
            taken[p] = 1


def _order_ties(anchors: list[int], enqueued: Sequence[float], ids: Sequence[str]) -> None:
    """Within each run of equal enqueue times, order the anchors (sorted by time) by ticket id.
    (Any indexes sorted by a key: constrained.py orders tickets of equal MMR the same way.)"""
    times = list(map(enqueued.__getitem__, anchors))
    # Positions k where times[k] == times[k + 1], found without a Python-level loop.
    tied = list(compress(count(), map(eq, times, islice(times, 1, None))))
    if not tied:
        return
    key = ids.__getitem__
    if 2 * len(tied) > len(times):
        # Mostly ties (a burst of tickets created within the same milliseconds: 100,000 in
        # 11.5 s share 11,487 enqueue times): walk the runs, cut where the time changes, rather
        # than the tied positions one by one (0.013 s against 0.023 s for that queue, quiet).
        starts = [0, *compress(count(1), map(ne, times, islice(times, 1, None))), len(times)]
        for start, end in zip(starts, islice(starts, 1, None)):
            if end - start > 1:
                anchors[start:end] = sorted(anchors[start:end], key=key)
        return
    k = 0
    while k < len(tied):
        start = end = tied[k]
        while k + 1 < len(tied) and tied[k + 1] == end + 1:
            k += 1
            end += 1
        anchors[start:end + 2] = sorted(anchors[start:end + 2], key=key)
        k += 1
