"""pool.py: the order of tickets with equal keys (what makes the matching a function of the queue)."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mmserver.matchmaking.pool import _order_ties


@st.composite
def queues(draw):
    """(enqueue time, ticket id) pairs: times from a span as narrow as one value (all tied,
    runs walked) or as wide as 40 (few ties, tied positions walked)."""
    span = draw(st.integers(0, 40))
    return draw(st.lists(st.tuples(st.integers(0, span), st.text("abcd", max_size=3)), unique_by=lambda t: t[1]))


def _ordered(times, ids):
    order = sorted(range(len(times)), key=times.__getitem__)
    _order_ties(order, times, ids)
    return order


@given(queues())
def test_equal_times_are_put_in_ticket_id_order(tickets):
    times = [float(t) for t, _ in tickets]
    ids = [i for _, i in tickets]
    assert _ordered(times, ids) == sorted(range(len(tickets)), key=lambda k: (times[k], ids[k]))


def test_both_walks_are_taken():
    # Mostly ties (runs of 2, 4, 3, 1 and 2: the runs are walked) and few (tied positions).
    for times in ([1.0] * 2 + [2.0] * 4 + [3.0] * 3 + [4.0] + [5.0] * 2, [float(k // 2 if k < 2 else k) for k in range(12)]):
        ids = [f"t{k:02d}" for k in reversed(range(len(times)))]
        assert _ordered(times, ids) == sorted(range(len(times)), key=lambda k: (times[k], ids[k]))
