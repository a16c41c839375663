"""The failure memo against a brute-force model of it (memo.py), driven through its own calls.

The model keeps every answer's reach (fine or coarse buckets, and partition) and marks the
answer stale when a ticket comes, goes or is matched in that reach after it was given; a
match earlier in the same tick counts too, since its claim may fail. It follows the other
ways out of force: the time an answer holds until, the clock going back, a new bucket width,
forget() and pruning. After every call: every answer in force is fresh in the model; recall()
never gives a stale answer, nor UNSEEN unless only this tick's arrivals changed; the index
holds every answer in force under its current key, and counts its entries right.

Random queues of 50 to 2,000 tickets, 1 to 3 partitions, tied or dense MMRs, fine, coarse and
too-wide reaches, many matches in the same buckets, failed claims, heavy departures, the
clock going back, the width retuned, answers given again with another reach while in force.
"""
import random
from math import inf

import pytest

from mmserver.matchmaking.memo import UNSEEN, FailureMemo, _bucket, _COARSE


def holds(entry, partition, bucket):
    if entry["partition"] != partition:
        return False
    b = bucket // _COARSE if entry["coarse"] else bucket
    return entry["first"] <= b <= entry["last"]


def index_count(memo):
    return sum(len(ids) for starts in memo._starts.values() for ids in starts.values())


def run(seed, ticks=40):
    rnd = random.Random(seed)
    memo = FailureMemo()
    nparts = rnd.choice([1, 2, 3])
    parts = [("p%d" % k,) for k in range(nparts)]
    lo_mmr, hi_mmr = rnd.choice([(0, 300), (0, 3000), (-2000, 2000), (0, 50)])
    tie = rnd.random() < 0.5
    nq = rnd.choice([50, 200, 600, 2000])
    spacing = rnd.choice([1 / 32, 0.5 / 32, 2 / 32])
    serial = [0]
    pm = rnd.choice([0.0, 0.005, 0.02, 0.1])
    steps = rnd.choice([(inf,), (inf, 5.0, 20.0, 60.0), (1000.0, inf)])
    moves = rnd.choice([(0.0, 1.0, 1.0, 3.0, 10.0, 30.0, -1.0, -10.0), (1.0,), (0.5, 1.0, -0.5)])

    def new_ticket():
        serial[0] += 1
        v = rnd.uniform(lo_mmr, hi_mmr)
        return ("t%d" % serial[0], rnd.choice(parts), float(round(v)) if tie else v, rnd.uniform(-20, 0))

    queue = {t[0]: t for t in (new_ticket() for _ in range(nq))}
    now = 0.0
    # The model: ticket id -> its answer's reach, reason and holds_until, and whether a change
    # made it stale (dirty) or an arrival of this tick may (arr_now); the ids it holds in force.
    ref = {}
    ref_force = set()
    prev_width = None
    prev_now = -inf
    prev_queue = None
    for t in range(ticks):
        ids = list(queue)
        rnd.shuffle(ids)
        sp = spacing if rnd.random() > 0.03 else spacing * rnd.choice([10, 0.05])
        memo.begin(ids, [queue[i][1] for i in ids], [queue[i][2] for i in ids], sp, now)
        width = memo._width
        retuned = width != prev_width
        if retuned or now < prev_now:
            ref_force.clear()
        if retuned:
            ref.clear()
        prev_width = width
        prev_now = now
        for e in ref.values():
            if e["arr_now"]:
                e["dirty"] = True  # an arrival of an earlier tick it did not take in
            e["arr_now"] = False
        if prev_queue is not None and not retuned:
            gone = prev_queue.keys() - queue.keys()
            came = queue.keys() - prev_queue.keys()
            for i in gone:
                ref.pop(i, None)
                ref_force.discard(i)
            # A departure makes the answers holding it stale; an arrival, stale unless the
            # answer takes it in at its recall (UNSEEN, then confirm()) in this tick.
            for tickets, which, flag in ((prev_queue, gone, "dirty"), (queue, came, "arr_now")):
                for i in which:
                    _, p, mmr, _ = tickets[i]
                    b = _bucket(mmr, width)
                    for k, e in ref.items():
                        if holds(e, p, b):
                            e[flag] = True
                            ref_force.discard(k)
        for k in list(ref_force):
            if ref[k]["holds_until"] <= now:
                ref_force.discard(k)
        prev_queue = dict(queue)
        # entries the memo dropped (pruning) leave the reference too
        for k in list(ref):
            if k not in memo._answers:
                ref.pop(k)
                ref_force.discard(k)
        check(memo, ref, ref_force, seed, t, "begin")
        marks = {}  # partition -> set of fine buckets matched this tick
        live = list(ids)
        matched_ids = set()
        nops = rnd.choice([20, 100, 400, len(ids)])
        sweep = ids if rnd.random() < 0.5 else None
        for n_op in range(nops):
            if sweep is not None:
                if n_op >= len(sweep):
                    break
                i = sweep[n_op]
                if i not in live:
                    continue
                op = rnd.random()
                if op < pm:
                    op = 0.8  # match
                elif i in memo.in_force:
                    continue
                else:
                    op = 0.5 if (i in ref and rnd.random() < 0.8) else 0.1
            else:
                op = rnd.random()
                i = rnd.choice(live) if live else None
            if i is None:
                break
            _, p, mmr, enq = queue[i]
            if op < 0.45:
                # remember
                r = rnd.choice([0.0, 0.3, 1.0, 3.0, 10.0, 40.0, 60.0, 100.0, 200.0, 800.0, 3000.0, 1e7])
                r *= rnd.uniform(0.5, 1.5) * width
                next_step = rnd.choice(steps)
                fixed = rnd.random() < 0.8
                least = r if rnd.random() < 0.3 else None
                memo.remember(i, (1,), 10.0, p, mmr - r, mmr + r, "why", least, rnd.choice([-1, 0, 1]), 5, None,
                              enq, next_step, fixed)
                e = memo._answers.get(i)
                if e is None:
                    ref.pop(i, None)
                    ref_force.discard(i)
                else:
                    d = dict(first=e.first, last=e.last, coarse=e.coarse, partition=e.partition, reason=e.reason,
                             holds_until=e.holds_until, dirty=False, arr_now=False)
                    # a match earlier in this tick in its reach: stale (its claim may fail)
                    if any(holds(d, p2, b) for p2, bs in marks.items() for b in bs):
                        d["dirty"] = True
                    ref[i] = d
                    if not d["dirty"] and e.holds_until > now:
                        ref_force.add(i)
                    else:
                        ref_force.discard(i)
            elif op < 0.75:
                # recall
                if i in memo.in_force and rnd.random() < 0.7:
                    continue  # the matcher mostly gives it without a recall
                e = memo._answers.get(i)
                res = memo.recall(i, (1,), 10.0, enq, rnd.choice(steps), rnd.random() < 0.8)
                d = ref.get(i)
                if res is UNSEEN:
                    assert d is not None and not d["dirty"], ("UNSEEN on a dirty answer", seed, t, i, d)
                    if rnd.random() < 0.5:
                        memo.confirm(i, 0)
                        e = memo._answers[i]
                        d["holds_until"] = e.holds_until
                        d["arr_now"] = False
                        if e.holds_until > now:
                            ref_force.add(i)
                    else:
                        memo.unseen = memo._unseen_id = None
                elif res is not None:
                    assert d is not None and not d["dirty"] and not d["arr_now"], (
                        "recall gave a stale answer", seed, t, i, d)
                    e = memo._answers[i]
                    d["holds_until"] = e.holds_until
                    if e.holds_until > now:
                        ref_force.add(i)
                    else:
                        ref_force.discard(i)
            elif op < 0.92:
                # a match of a few tickets of one partition (dense: same or near buckets)
                same_p = [j for j in live if queue[j][1] == p]
                rnd.shuffle(same_p)
                if rnd.random() < 0.5:
                    same_p.sort(key=lambda j: abs(queue[j][2] - mmr))
                grp = same_p[:rnd.randint(1, 6)]
                mm = [queue[j][2] for j in grp]
                memo.matched(p, mm)
                for j in grp:
                    live.remove(j)
                    matched_ids.add(j)
                for v in mm:
                    b = _bucket(v, width)
                    marks.setdefault(p, set()).add(b)
                    for k, e in ref.items():
                        if holds(e, p, b):
                            e["dirty"] = True
                            ref_force.discard(k)
            else:
                memo.forget(i)
                ref.pop(i, None)
                ref_force.discard(i)
            check(memo, ref, ref_force, seed, t, "op")
        # next tick's queue: matched tickets leave (claim ok) or stay (claim failed)
        for j in matched_ids:
            if rnd.random() < 0.7:
                queue.pop(j, None)
        for j in list(queue):
            if rnd.random() < rnd.choice([0.0, 0.01, 0.1, 0.3]):
                queue.pop(j)
        for _ in range(rnd.choice([0, 1, 5, 30, 100])):
            tk = new_ticket()
            if queue and rnd.random() < 0.7:
                base = queue[rnd.choice(list(queue))]
                tk = (tk[0], base[1], base[2] + rnd.uniform(-1, 1) * width, tk[3])
            queue[tk[0]] = tk
        # clock: forward mostly, sometimes back
        now += rnd.choice(moves)


def check(memo, ref, ref_force, seed, t, where):
    bad = [k for k in memo.in_force if k not in ref_force]
    if bad:
        k = bad[0]
        raise AssertionError(("in force but stale", seed, t, where, k, ref.get(k),
                              vars_of(memo._answers.get(k))))
    assert index_count(memo) == memo._indexed, ("_indexed drift", seed, t, index_count(memo), memo._indexed)
    # every answer in force is indexed under its current key
    for k in memo.in_force:
        e = memo._answers[k]
        key = (e.coarse, (e.last - e.first).bit_length(), e.partition)
        assert k in memo._starts.get(key, {}).get(e.first, ()), ("in force, not indexed", seed, t, k)
    if where == "begin":  # the index rebuilt once its stale entries pile up: bounded
        assert memo._indexed <= 2 * len(memo.in_force) + 1024, ("index grows", seed, t)


def vars_of(e):
    return None if e is None else {s: getattr(e, s) for s in e.__slots__}


@pytest.mark.parametrize("seed", range(12))
def test_the_memo_keeps_no_stale_answer_in_force_against_a_model(seed):
    run(seed)
