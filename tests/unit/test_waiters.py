"""Waiters with real threads: wake-ups, timeouts, the cap, wake_all and close."""
from __future__ import annotations

import threading
import time

import pytest

from mmserver.http.waiters import Waiters
from tests.waiting import PROMPTLY_S, wait_until

# A wait a wake must cut short: long enough that "woken" and "timed out" never overlap, however
# loaded the machine. Tests check the result (True: woken) and an elapsed time well below it.
LONG_S = 30.0


class Poll(threading.Thread):
    """A request thread in a long-poll: records what wait() returned and how long it took."""

    def __init__(self, waiters: Waiters, ticket_id: str, timeout: float) -> None:
        super().__init__(name=f"poll-{ticket_id}", daemon=True)
        self.waiters, self.ticket_id, self.timeout = waiters, ticket_id, timeout
        self.result: bool | None | str = "not run"
        self.elapsed = -1.0

    def run(self) -> None:
        start = time.monotonic()
        self.result = self.waiters.wait(self.ticket_id, self.timeout)
        self.elapsed = time.monotonic() - start


def start_polls(waiters: Waiters, ticket_ids: list[str], timeout: float = 5.0) -> list[Poll]:
    before = waiters.waiting
    polls = [Poll(waiters, ticket_id, timeout) for ticket_id in ticket_ids]
    for poll in polls:
        poll.start()
    assert wait_until(lambda: waiters.waiting == before + len(polls), PROMPTLY_S, interval=0.002), waiters.waiting
    return polls


def join(polls: list[Poll]) -> None:
    for poll in polls:
        poll.join(LONG_S + 5)
        assert not poll.is_alive()


def test_notify_wakes_only_the_waiters_of_those_tickets():
    waiters = Waiters(max_waiting=8)
    a1, a2 = start_polls(waiters, ["a", "a"], timeout=LONG_S)
    b = start_polls(waiters, ["b"], timeout=1.0)[0]
    waiters.notify(["a", "unknown"])
    join([a1, a2])
    assert a1.result is True and a2.result is True
    assert max(a1.elapsed, a2.elapsed) < PROMPTLY_S
    join([b])
    assert b.result is False
    assert b.elapsed >= 0.95
    assert waiters.waiting == 0


def test_on_event_parses_comma_separated_ids():
    waiters = Waiters(max_waiting=8)
    polls = start_polls(waiters, ["t1", "t2", "t3"], timeout=LONG_S)
    waiters.on_event("mm:events", " t1,,t3 ")
    join([polls[0], polls[2]])
    assert (polls[0].result, polls[2].result) == (True, True)
    waiters.on_event("mm:events", b"t2")  # a subscriber without decode_responses hands bytes
    join([polls[1]])
    assert polls[1].result is True
    assert polls[1].elapsed < PROMPTLY_S


def test_wait_times_out_with_false():
    waiters = Waiters(max_waiting=1)
    start = time.monotonic()
    assert waiters.wait("t", 0.1) is False
    assert 0.09 <= time.monotonic() - start < PROMPTLY_S
    assert waiters.waiting == 0


def test_cap_reached_answers_none_at_once():
    waiters = Waiters(max_waiting=2)
    polls = start_polls(waiters, ["a", "b"], timeout=LONG_S)
    start = time.monotonic()
    assert waiters.wait("c", LONG_S) is None
    assert time.monotonic() - start < PROMPTLY_S
    waiters.notify(["a"])
    join([polls[0]])
    assert waiters.waiting == 1
    assert waiters.wait("c", 0.01) is False  # a slot is free again
    waiters.wake_all()
    join(polls)


def test_zero_cap_never_waits():
    assert Waiters(max_waiting=0).wait("t", 1.0) is None


def test_wake_all_wakes_everyone():
    waiters = Waiters(max_waiting=8)
    polls = start_polls(waiters, ["a", "b", "c"], timeout=LONG_S)
    waiters.wake_all()
    join(polls)
    assert [poll.result for poll in polls] == [True, True, True]
    assert max(poll.elapsed for poll in polls) < PROMPTLY_S


def test_close_wakes_everyone_and_refuses_new_waits():
    waiters = Waiters(max_waiting=8)
    polls = start_polls(waiters, ["a", "b"], timeout=LONG_S)
    waiters.close()
    join(polls)
    assert all(poll.result is True and poll.elapsed < PROMPTLY_S for poll in polls)
    assert waiters.closed
    assert waiters.wait("a", 5.0) is None
    assert waiters.register("a") is None
    assert waiters.waiting == 0


def test_registered_waiter_keeps_a_wake_that_arrives_before_it_waits():
    # The long-poll registers, reads its ticket, then waits: an event in between must count.
    waiters = Waiters(max_waiting=1)
    waiter = waiters.register("t")
    assert waiter is not None
    waiters.notify(["t"])
    start = time.monotonic()
    assert waiter.wait(LONG_S) is True
    assert time.monotonic() - start < PROMPTLY_S
    assert waiter.wait(0.05) is False  # re-armed after the wake
    waiters.unregister(waiter)
    waiters.unregister(waiter)  # twice is harmless
    assert waiters.waiting == 0


def test_a_waiter_after_close_never_blocks():
    waiters = Waiters(max_waiting=2)
    waiter = waiters.register("t")
    waiters.close()
    assert waiter.closed
    for _ in range(3):
        start = time.monotonic()
        assert waiter.wait(LONG_S) is True
        assert time.monotonic() - start < PROMPTLY_S
    waiters.unregister(waiter)


def test_many_threads_count_stays_exact():
    waiters = Waiters(max_waiting=50)
    polls = start_polls(waiters, [f"t{i % 5}" for i in range(40)], timeout=LONG_S)
    waiters.notify([f"t{i}" for i in range(5)])
    join(polls)
    assert all(poll.result is True for poll in polls)
    assert waiters.waiting == 0


def test_negative_cap_is_refused():
    with pytest.raises(ValueError):
        Waiters(max_waiting=-1)
