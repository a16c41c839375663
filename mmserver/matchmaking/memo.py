"""Why tickets failed as anchors, kept from one tick of a queue to the next.

A ticket its rules keep waiting (a tank among tanks with no dps near it, a player whose
latency or level fits nobody close) is examined in full each tick it waits: the walk of its
MMR window, its filters, the lineup check. That is ~80 µs a ticket, so a queue of 100,000 such
tickets (the usual state of a role queue whose players mostly offer the same role) would
cost seconds every tick, to reach the same answers as the tick before.

The constrained matcher's answer for an anchor depends only on the anchor's limits (its MMR
window, latency and distance limits, the smallest match allowed now) and on the tickets of
its partition (its `same` values) whose MMR lies within the anchor's *reach*: the whole MMR
window when its walk ended at the window's edge, else the distance of the farthest neighbour
the walk visited before its caps stopped it (every neighbour nearer was visited, and one
farther would come after the cap). So an answer recorded for a ticket still holds at its turn
in a later tick when its limits are the same and no ticket of its partition within its reach
was added to the queue or removed from it since: matched in a tick (after the anchor's turn,
or before its turn in this one), or gone or come between ticks (cancelled, expired, claimed by
another replica, created, or back after a claim that failed). The matcher then reuses it
instead of walking again; the answers are exactly the ones it would have computed
(tests/unit/test_memo.py compares runs with and without the memo over random sequences of
ticks). That needs the matcher's answers to depend on the queue alone, not on the order it is
read in: it orders tickets of equal MMR by id. A failure found before any search for a
line-up, from a walk its caps ended, holds for any MMR window at least as wide as its reach:
the walk visits the same neighbours, and the only other reader of the window on that path,
the greedy pick along the walk, could only have changed the answer by completing a match,
which such a failure rules out (constrained.py, _anchor).

A ticket that arrived within the reach is the usual change (the queue's arrivals fall among
the walks of the tickets waiting near them), and most arrivals fail the anchor's filters (their
regions, levels or lists fit it no better than the ones it waits among). Such an arrival is
visited by the walk and counted among the players its filter turns away (or lies past the
walk's end, in the padding of the reach or beyond its last candidate, and is not visited at
all), and changes nothing else, when the walk had room for one more visit (it did not end at its cap of visits): the
candidates are the same, in the same order, so are the greedy pick and the search, and the
players counted past each filter are the same from the arrival's filter on. So when the only
changes within a fine reach since the answer are arrivals of this tick, the recall returns
UNSEEN with those arrivals (`unseen`), and the matcher reuses the answer (`confirm`) when each
of them fails a filter no later than the last one whose count could not have changed the
answer (`counted`: the filter whose count gave it, every filter for an answer found after the
counts, none for "mmr") and the walk has room for them all.

An arrival that passes every filter becomes a candidate. When the answer came from the line-up
check by sizes and roles alone (no line-up exists among the candidates: `roles`, `players`),
the check reads the candidates' line-up keys (size and role offer) and sizes only as counts
capped at what one match holds. So an arrival of a key the walk met at least that many of (a
dps among more dps than a match takes) changes nothing the check reads, and the walk ends
where it did, or, ended by its cap of visits, one visit earlier, dropping a last visit that
changes nothing either. And when the walk was ended by its cap of candidates, an arrival of the
key of the last candidates that counted takes the place of the last one, which the walk no
longer reaches: the keys are the same multiset, and so is the answer. No greedy pick can
complete a match that the check says does not exist. The answer keeps `tail`
(constrained._Constrained._tail_of): the keys met in full, the key of the last candidates and
how many of them in a row carry it, and how many last visits change nothing; passing arrivals
of those keys, no more than those counts allow, then leave it in force.

Only answers that spent no steps of the lineup search (_FIRST_PASS_STEPS and the rest) and
came from walks among solo tickets or modes without roles are recorded: there no search step
is ever spent, so the answer cannot depend on how many steps a tick had left.

Pure data, no I/O: one memo per queue (mode and region), owned by the caller (the ticker)
and passed to every tick of that queue. Its size is bounded by the queue's: one answer per
waiting ticket (~0.4 KB with its share of the queue's copy), and per MMR bucket of each
partition the latest change, pruned to what the answers of the last ticks need once the
buckets outnumber four times the queue plus 4,096.

Most answers hold tick after tick, and even a recall costs a few µs: 0.3 s a tick for
~75,000 waiting tickets. So the answers that hold without one are kept apart, `in_force`
(ticket id -> reason): an answer enters it when it is given or recalled and holds until a
known time (`holds_until`: the anchor's limits change only when its wait crosses a step of an
expansion or fill_wait_s, and its window either stays the same, having reached its cap or not
growing, or only widens over an answer that holds for any wider window), and leaves it when a
ticket comes, goes or is matched within its reach, when that time comes, or when the clock
goes back. The matcher gives an anchor whose answer is in force that answer at its turn
without a recall, when the counts it checks before a recall (players in the queue and in the
anchor's partition) cannot refuse it (constrained.py); otherwise it recalls as before.

Only the answers in force are indexed for changes, by their reach's first bucket and by the
power of two above their span: a change in bucket b looks, for each k, at the answers of
spans under 2**k whose reach starts fewer than 2**k buckets below b. An answer that starts in
the upper half of that stretch holds b for certain, and leaves the index with the change, so
a tick's changes cost about the answers they take out of force, not the answers near them
(which a tick of many departures would read again and again: ~12 s, once, for 22,000 of them
among 78,000 answers). The changes a tick starts with are looked up once per bucket.

Answers are kept by ticket id: a ticket's MMR, size, attributes, latencies and roles never
change under its id (the API has no way to change a queued ticket; a ticket back after a
failed claim is the same ticket, and its bucket was marked by the match).
"""
from __future__ import annotations

from bisect import bisect_left, insort
from heapq import heapify, heappop, heappush
from itertools import repeat
from math import floor, inf, isfinite, nextafter
from typing import Hashable

# Changes are kept per partition by MMR bucket (the latest change of each). A change anywhere
# in a bucket a reach touches counts: never a stale answer, at worst a walk done again. So a
# bucket is narrow, about _TICKETS_PER_BUCKET tickets of the queue's middle wide: a walk's
# reach (up to ~200 neighbours) then reads a few dozen buckets, and a new ticket makes stale
# only the answers whose reach it falls in, or nearly. The width follows the queue's density,
# set again (the memo emptied) when the density moved by more than _RETUNE times; it is never
# below _LEAST_WIDTH times the largest MMR, so an MMR divided by it stays a modest number. A
# reach wider than _MOST_BUCKETS buckets (the walk of a ticket in a sparse stretch, the tails of
# the MMR curve or a small partition in a dense queue) is checked against coarse buckets,
# _COARSE fine ones each, whose latest change is kept beside the fine ones: a change
# anywhere in them makes the answer stale, which is seldom where tickets are sparse. Only a
# reach wider than _MOST_BUCKETS coarse buckets is not kept. Answers not given or reused in
# the last _KEPT_TICKS ticks (their tickets were refused before any walk, or taken by a
# match) are dropped when the changes are pruned.
_TICKETS_PER_BUCKET = 32
_RETUNE = 4.0
_LEAST_WIDTH = 1e-9
_MOST_BUCKETS = 128
_COARSE = 32  # fine buckets per coarse bucket: coarse bucket = fine bucket // _COARSE

_KEPT_TICKS = 2
# The classes of FailureMemo._starts: (coarse, span class), every span under _MOST_BUCKETS.
_INDEX_CLASSES = tuple((coarse, span) for coarse in (False, True) for span in range(_MOST_BUCKETS.bit_length()))

# recall()'s answer when the only changes in the reach are arrivals of this tick (see above).
UNSEEN = object()


def _bucket(value: float, width: float) -> int:
    """The bucket of an MMR (or a reach's edge). Clamped: a quotient beyond +-1e15 (an edge at
    infinity, a width made tiny by crafted MMRs) lands in an end bucket, never an error. An
    answer's buckets are near its anchor's, which is never that far."""
    quotient = value / width
    return floor(quotient) if -1e15 < quotient < 1e15 else (-(10 ** 15) if quotient < 0 else 10 ** 15)


def _first_clock(enqueued_at: float, step: float) -> float:
    """The first clock at which a ticket enqueued at `enqueued_at` has waited `step` by the
    matcher's own test (`now - enqueued_at >= step`): `enqueued_at + step` may round to either
    side of it. inf for a step of inf (the last stretch of the limits)."""
    if step == inf:
        return inf
    at = enqueued_at + step
    while at - enqueued_at < step:
        at = nextafter(at, inf)
    while (earlier := nextafter(at, -inf)) - enqueued_at >= step:
        at = earlier
    return at


def _holds_until(enqueued_at: float, next_step: float, window_fixed: bool, least_window: float | None) -> float:
    """Until when an answer holds without a recall: until its wait reaches the next step of
    its limits, if its MMR window no longer changes or it holds for any wider window (the
    window only widens); otherwise only at its recall (-inf)."""
    return _first_clock(enqueued_at, next_step) if window_fixed or least_window is not None else -inf


class _Answer:
    """Why an anchor failed, under which limits, and what its walk read."""

    __slots__ = ("stamp", "window", "least_window", "partition", "first", "last", "reason", "given", "coarse",
                 "counted", "visited", "tail", "holds_until")

    def __init__(self, stamp: tuple, window: float, least_window: float | None, partition: Hashable, first: int,
                 last: int, reason: str, given: int, coarse: bool, counted: int, visited: int, tail: tuple | None,
                 holds_until: float) -> None:
        self.stamp = stamp  # the anchor's limits but its MMR window
        self.window = window  # its MMR window
        self.least_window = least_window  # the least window it holds for (None: only `window`)
        self.partition = partition
        self.first, self.last = first, last  # the buckets of its reach (coarse ones when `coarse`)
        self.reason = reason
        self.given = given  # the tick number it was given or last recalled in
        self.coarse = coarse
        self.counted = counted  # the last filter an unseen arrival may fail without changing it
        self.visited = visited  # the tickets its walk visited
        self.tail = tail  # constrained._Constrained._tail_of's, or None
        # When its limits or window next change: inf, never; -inf, at once (not in force).
        self.holds_until = holds_until


class FailureMemo:
    def __init__(self) -> None:
        self._width = 0.0  # MMR per bucket; 0: not set yet
        # Ticks count by two: answers of a tick get its even number, the changes it makes (its
        # matches) the odd one after. So a change is newer than an answer exactly when it may
        # make it stale: made after it, or in the same tick (kept on the safe side).
        self._tick = 0
        self._now = -inf  # the clock of the last tick
        self._answers: dict[str, _Answer] = {}
        # The answers that hold without a recall: ticket id -> reason (see above).
        self.in_force: dict[str, str] = {}
        # (holds_until, ticket id), pushed when an answer that holds until a time comes into
        # force; stale entries (the answer changed, gone or out of force) are skipped, and the
        # heap rebuilt from the answers in force when they pile up.
        self._until: list[tuple[float, str]] = []
        # The answers in force by the first bucket of their reach: (coarse, span class,
        # partition) -> {bucket: {ids}}, the span class k = (last - first).bit_length(): the
        # reach spans fewer than 2**k buckets. Entries out of force or changed are dropped
        # when met, and the index rebuilt from the answers in force when they pile up.
        self._starts: dict[tuple[bool, int, Hashable], dict[int, set[str]]] = {}
        self._indexed = 0
        # The fine buckets of this tick's matches by partition: sorted, and as a set.
        self._matched_now: dict[Hashable, tuple[list[int], set[int]]] = {}
        # partition -> {bucket: the tick number of its latest change}, fine and coarse buckets.
        self._changes: dict[Hashable, dict[int, int]] = {}
        self._coarse_changes: dict[Hashable, dict[int, int]] = {}
        # The tickets that arrived at this tick's start, partition -> {fine bucket: (the
        # bucket's latest change before them, [their indices in this tick's ticket list])}.
        self._arrived: dict[Hashable, dict[int, tuple[int, list[int]]]] = {}
        self.unseen: tuple[list[int], int, int, tuple | None] | None = None  # set by recall() with UNSEEN
        self._unseen_id: str | None = None
        self._unseen_holds_until = -inf
        # The queue the last tick started with, ticket id -> (partition, mmr, index in that
        # tick's list): None before the first tick. (A ticket it matched whose claim failed is
        # queued again: the match already marked its bucket, newer than every answer given in
        # that tick.)
        self._queue: dict[str, tuple[Hashable, float, int]] | None = None
        self.recalled = 0  # answers reused, over the memo's life

    def __len__(self) -> int:
        return len(self._answers)

    @property
    def buckets(self) -> int:
        """Fine MMR buckets whose latest change the memo holds, over every partition (the
        coarse ones are never more)."""
        return sum(map(len, self._changes.values()))

    def begin(self, ticket_ids: list[str], partitions: list[Hashable] | None, mmrs: list[float],
              spacing: float, now: float = -inf) -> None:
        """A tick at `now` starts over these tickets (every ticket the matcher may use, its
        partition (None: one for all) and MMR; `spacing`: the MMR between neighbouring tickets
        in the middle of the queue): what changed since the last tick is recorded, and the
        answers it touches, or whose time came, are no longer in force."""
        self._tick += 2
        tick = self._tick
        self._matched_now = {}
        in_force = self.in_force
        if now < self._now:
            in_force.clear()  # the clock went back: windows may be narrower than the answers'
        self._now = now
        queue = dict(zip(ticket_ids, zip(partitions if partitions is not None else repeat(()), mmrs,
                                         range(len(ticket_ids)))))
        previous = self._queue
        if mmrs:
            least = _LEAST_WIDTH * max(abs(min(mmrs)), abs(max(mmrs)))
            wanted = max(spacing * _TICKETS_PER_BUCKET, least)
            if not (isfinite(wanted) and wanted > 0):
                wanted = 1.0
            width = self._width
            if not width / _RETUNE <= wanted <= width * _RETUNE:
                # Started afresh: no answer is kept, so nothing that changed matters.
                self._width = wanted
                self._answers.clear()
                in_force.clear()
                self._until.clear()
                self._starts.clear()
                self._indexed = 0
                self._changes.clear()
                self._coarse_changes.clear()
                previous = None
        width = self._width or 1.0
        changes, coarse = self._changes, self._coarse_changes
        self._arrived = arrived = {}
        touched: dict[Hashable, set[int]] = {}  # the fine buckets changed, by partition
        if previous is not None:
            gone = previous.keys() - queue.keys()
            came = queue.keys() - previous.keys()
            for ticket_id in gone:
                self._answers.pop(ticket_id, None)
                in_force.pop(ticket_id, None)
                partition, mmr, _ = previous[ticket_id]
                bucket = _bucket(mmr, width)
                changes.setdefault(partition, {})[bucket] = tick
                coarse.setdefault(partition, {})[bucket // _COARSE] = tick
                touched.setdefault(partition, set()).add(bucket)
            # After the departures: a bucket one left is then marked by this tick already, so
            # no answer takes its arrivals for the only change.
            for ticket_id in came:
                partition, mmr, index = queue[ticket_id]
                bucket = _bucket(mmr, width)
                buckets = changes.setdefault(partition, {})
                here = arrived.setdefault(partition, {})
                found = here.get(bucket)
                if found is None:
                    here[bucket] = (buckets.get(bucket, 0), [index])
                else:
                    found[1].append(index)
                buckets[bucket] = tick
                coarse.setdefault(partition, {})[bucket // _COARSE] = tick
                touched.setdefault(partition, set()).add(bucket)
        for partition, buckets in touched.items():
            for bucket in buckets:
                self._stab(partition, bucket)
        self._queue = queue
        until = self._until
        while until and until[0][0] <= now:
            _, ticket_id = heappop(until)
            entry = self._answers.get(ticket_id)
            if entry is not None and entry.holds_until <= now:
                in_force.pop(ticket_id, None)
        if len(until) > 2 * len(in_force) + 1024:
            self._until = [(self._answers[t].holds_until, t) for t in in_force
                           if self._answers[t].holds_until < inf]
            heapify(self._until)
        if self._indexed > 2 * len(in_force) + 1024:
            self._starts = {}
            self._indexed = 0
            for ticket_id in in_force:
                self._index(ticket_id, self._answers[ticket_id])
        # A bucket whose latest change is older than every answer can make none stale: such
        # buckets are dropped once they outnumber the queue (MMRs spread over a huge range
        # would otherwise leave a bucket behind for every ticket that ever came and went).
        if self.buckets > 4 * len(queue) + 4096:
            # An answer in force is, now, as if given in this tick: nothing in its reach
            # changed since it was given, and its limits are the same.
            for ticket_id in in_force:
                self._answers[ticket_id].given = tick
            recent = tick - 2 * _KEPT_TICKS
            self._answers = {k: entry for k, entry in self._answers.items() if entry.given >= recent}
            oldest = min((entry.given for entry in self._answers.values()), default=tick)
            self._changes, self._coarse_changes = (
                {partition: kept for partition, buckets in level.items()
                 if (kept := {b: seen for b, seen in buckets.items() if seen >= oldest})}
                for level in (changes, coarse))

    def _index(self, ticket_id: str, entry: _Answer) -> None:
        span = (entry.last - entry.first).bit_length()
        ids = self._starts.setdefault((entry.coarse, span, entry.partition), {}).setdefault(entry.first, set())
        if ticket_id not in ids:
            ids.add(ticket_id)
            self._indexed += 1

    def _stab(self, partition: Hashable, bucket: int) -> None:
        """A ticket of `partition` in fine `bucket` came, went or was matched: the answers whose
        reach holds it are no longer in force."""
        in_force = self.in_force
        if not in_force:
            return
        answers = self._answers
        for coarse, span in _INDEX_CLASSES:
            key = (coarse, span, partition)
            starts = self._starts.get(key)
            if not starts:
                continue
            b = bucket // _COARSE if coarse else bucket
            # A reach of span class k spans fewer than 2**k buckets: it starts fewer than 2**k
            # below b. Those starting in the upper half of that stretch hold b for certain.
            for first in range(b - (1 << span) + 1, b + 1):
                ids = starts.get(first)
                if not ids:
                    continue
                for ticket_id in list(ids):
                    entry = answers.get(ticket_id)
                    current = (entry is not None and ticket_id in in_force and entry.first == first
                               and entry.coarse == coarse and (entry.last - first).bit_length() == span)
                    if current:
                        if entry.last < b:
                            continue  # in force, and its reach ends below b
                        del in_force[ticket_id]
                    # Out of the index: out of force now, or a stale entry (the answer gone,
                    # out of force, or given again with another reach).
                    ids.discard(ticket_id)
                    self._indexed -= 1
                if not ids:
                    del starts[first]
            if not starts:
                del self._starts[key]  # a partition's last answer of that class gone

    def _in_force(self, ticket_id: str, entry: _Answer) -> None:
        if entry.holds_until > self._now:
            self.in_force[ticket_id] = entry.reason
            self._index(ticket_id, entry)
            if entry.holds_until < inf:
                heappush(self._until, (entry.holds_until, ticket_id))
        else:
            self.in_force.pop(ticket_id, None)

    def matched(self, partition: Hashable, mmrs: list[float]) -> None:
        """Tickets of one partition matched in this tick: every answer that read them is stale,
        in this tick and the next (whether their claim succeeds or not)."""
        buckets = self._changes.setdefault(partition, {})
        coarse = self._coarse_changes.setdefault(partition, {})
        width = self._width or 1.0
        changed = self._tick + 1
        marks = self._matched_now.get(partition)
        if marks is None:
            marks = self._matched_now[partition] = ([], set())
        ordered, marked = marks
        for mmr in mmrs:
            quotient = mmr / width  # _bucket(mmr, width), inlined: this runs per matched ticket
            bucket = floor(quotient) if -1e15 < quotient < 1e15 else _bucket(mmr, width)
            if bucket in marked:
                # Marked already in this tick: every answer in force that holds it left
                # force then, and none that holds it came into force since (remember(),
                # recall() and confirm() all see the mark).
                continue
            marked.add(bucket)
            insort(ordered, bucket)  # at most one per bucket of the partition
            buckets[bucket] = changed
            coarse[bucket // _COARSE] = changed
            self._stab(partition, bucket)

    def recall(self, ticket_id: str, stamp: tuple, window: float, enqueued_at: float = 0.0, next_step: float = inf,
               window_fixed: bool = False) -> str | object | None:
        """The answer recorded for this ticket, when it was given under the same `stamp` (the
        anchor's limits but its MMR window) and the same `window` (or any window covering its
        reach, for answers that hold so), and nothing within its reach changed since; UNSEEN
        when the only changes in its reach are tickets that arrived at this tick's start
        (`unseen` then holds them, by index, and what the matcher needs to judge them; it
        calls confirm() when the answer holds); else None. `enqueued_at`, `next_step`,
        `window_fixed`: as remember()'s."""
        entry = self._answers.get(ticket_id)
        if entry is None:
            return None
        if entry.stamp != stamp or (window != entry.window and (entry.least_window is None
                                                                 or window < entry.least_window)):
            return None
        changes = (self._coarse_changes if entry.coarse else self._changes).get(entry.partition)
        if changes:
            tick = self._tick
            given = entry.given
            arrived = (None if entry.coarse or (entry.counted < 0 and entry.tail is None)
                       else self._arrived.get(entry.partition))
            unseen = None
            for bucket in range(entry.first, entry.last + 1):
                changed = changes.get(bucket, 0)
                if changed > given:
                    # Arrivals of this tick, and nothing else since the answer: maybe unseen.
                    if changed == tick and arrived is not None:
                        found = arrived.get(bucket)
                        if found is not None and found[0] <= given:
                            if unseen is None:
                                unseen = list(found[1])
                            else:
                                unseen += found[1]
                            continue
                    return None
            if unseen is not None:
                self.unseen = (unseen, entry.counted, entry.visited, entry.tail)
                self._unseen_id = ticket_id
                self._unseen_holds_until = _holds_until(enqueued_at, next_step, window_fixed, entry.least_window)
                return UNSEEN
        entry.given = self._tick
        # What it holds until from now on (an answer given in a later stretch of an equal
        # stamp, before the clock went back, held until that stretch's end).
        entry.holds_until = _holds_until(enqueued_at, next_step, window_fixed, entry.least_window)
        self._in_force(ticket_id, entry)
        self.recalled += 1
        return entry.reason

    def confirm(self, ticket_id: str, candidates: int = 0) -> str:
        """The answer recall() returned UNSEEN for holds: the matcher found that each of the
        unseen arrivals fails a filter no later than `counted`, or is of a key the tail holds
        (one of `candidates` arrivals of its run's key that take the places of as many last
        candidates, or of a key met in full), and that the walk had room for them all. They
        are now among the tickets it visited (counted so, though the candidates shortened it)."""
        assert ticket_id == self._unseen_id and self.unseen is not None
        entry = self._answers[ticket_id]
        if entry.tail is not None:
            # (constrained._Constrained._tail_of.) The walk now ends `candidates` earlier:
            # once no last candidate of the run's key is left, which one is last is not known
            # (nor, so, which keys leave the answer). A walk its cap of visits ended has
            # pushed out as many last visits as arrived.
            key, run, full, last, spare = entry.tail
            if spare is not None:
                spare -= len(self.unseen[0])
            kept = run > candidates or not candidates
            entry.tail = (key, run - candidates, full, last, spare) if kept else None
        entry.visited += len(self.unseen[0])
        entry.given = self._tick
        entry.holds_until = self._unseen_holds_until
        self.unseen = self._unseen_id = None
        self._in_force(ticket_id, entry)
        self.recalled += 1
        return entry.reason

    def remember(self, ticket_id: str, stamp: tuple, window: float, partition: Hashable, low: float, high: float,
                 reason: str, least_window: float | None = None, counted: int = -1, visited: int = 0,
                 tail: tuple | None = None, enqueued_at: float = 0.0, next_step: float = inf,
                 window_fixed: bool = False) -> None:
        """The answer for this ticket, which read the tickets of `partition` with MMR in
        [low, high] and nothing else but its own limits, `stamp` and its MMR `window`; with
        `least_window`, it holds for every window at least that wide too. `counted`: the last
        filter (by index) an arrival may fail without changing it (-1: none); `visited`: the
        tickets its walk visited; `tail`: which passing arrivals leave an answer of the line-up
        check (constrained._Constrained._tail_of), None for other answers;
        `enqueued_at`, `next_step`: the anchor's enqueue time, and the wait at which its limits
        next change (inf: never); `window_fixed`: its MMR window no longer changes (capped, or
        not growing). It holds without a recall until that wait if its window is fixed or it
        holds for any wider one, else only at its recall."""
        width = self._width or 1.0
        # A reach of more than _MOST_BUCKETS coarse buckets (or not finite) is not kept: it is
        # the test below, done before any division.
        if not high - low < width * _COARSE * (_MOST_BUCKETS - 2):
            self.forget(ticket_id)
            return
        # One bucket more on each side: low and high are the anchor's MMR minus and plus the
        # reach, rounded, and may land a hair inside a neighbour the walk read.
        first, last = _bucket(low, width) - 1, _bucket(high, width) + 1
        coarse = last - first >= _MOST_BUCKETS
        if coarse:
            # Coarse bucket b holds fine buckets b * _COARSE to b * _COARSE + _COARSE - 1.
            first, last = first // _COARSE, last // _COARSE
        if last - first >= _MOST_BUCKETS:
            self.forget(ticket_id)
            return
        holds_until = _holds_until(enqueued_at, next_step, window_fixed, least_window)
        entry = _Answer(stamp, window, least_window, partition, first, last, reason, self._tick, coarse, counted,
                        visited, tail, holds_until)
        self._answers[ticket_id] = entry
        found = self._matched_now.get(partition)
        marks = found[0] if found else None
        if marks:
            # Given after a match in its reach, in this tick: stale once that match's claim
            # fails and its tickets are back (recall sees the match's mark); never in force.
            low_fine, high_fine = (first * _COARSE, last * _COARSE + _COARSE - 1) if coarse else (first, last)
            k = bisect_left(marks, low_fine)
            if k < len(marks) and marks[k] <= high_fine:
                self.in_force.pop(ticket_id, None)
                return
        self._in_force(ticket_id, entry)

    def forget(self, ticket_id: str) -> None:
        self._answers.pop(ticket_id, None)
        self.in_force.pop(ticket_id, None)
