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


# --- parking: a waiter that holds no thread ----------------------------------------------------

class Resumes:
    """A resume callback that records how often it was called."""

    def __init__(self) -> None:
        self.calls = 0
        self.called = threading.Event()

    def __call__(self) -> None:
        self.calls += 1
        self.called.set()


def test_a_parked_waiter_is_resumed_once_by_a_wake():
    waiters = Waiters(max_waiting=4)
    waiter = waiters.register("a")
    resume = Resumes()
    assert waiter.park(resume, LONG_S) is True
    assert waiter.parked
    waiters.notify(["a"])
    waiters.notify(["a"])  # the second wake is recorded, not a second resume
    assert resume.calls == 1 and not waiter.parked
    # that recorded wake makes the next park refuse: the request re-reads at once
    assert waiter.park(Resumes(), LONG_S) is False


def test_a_wake_before_the_park_makes_the_park_refuse():
    waiters = Waiters(max_waiting=4)
    waiter = waiters.register("a")
    waiters.notify(["a"])  # between the registration (or a re-read) and the park
    resume = Resumes()
    assert waiter.park(resume, LONG_S) is False
    assert resume.calls == 0
    # consumed: a later park waits again
    assert waiter.park(resume, LONG_S) is True


def test_a_parked_waiter_is_resumed_at_its_timeout_by_the_alarm_thread():
    waiters = Waiters(max_waiting=4)
    waiter = waiters.register("a")
    resume = Resumes()
    assert waiter.park(resume, 0.05)
    assert resume.called.wait(PROMPTLY_S)
    waiters.notify(["a"])  # after the timeout's resume: recorded, no second call
    assert resume.calls == 1
    waiters.close()


def test_an_alarm_of_an_earlier_park_does_not_resume_a_later_one():
    waiters = Waiters(max_waiting=4)
    waiter = waiters.register("a")
    first, second = Resumes(), Resumes()
    assert waiter.park(first, 0.05)
    waiters.notify(["a"])  # woken before its timeout
    assert first.calls == 1
    assert waiter.park(second, LONG_S)
    # the first park's alarm comes due and finds a later park: it leaves it alone
    assert wait_until(lambda: len(waiters.alarms) == 1, PROMPTLY_S)
    assert second.calls == 0 and waiter.parked
    waiters.close()
    assert second.calls == 1


def test_close_resumes_every_parked_waiter_and_refuses_later_parks():
    waiters = Waiters(max_waiting=8)
    parked = [(waiters.register(key), Resumes()) for key in ("a", "b", "a")]
    for waiter, resume in parked:
        assert waiter.park(resume, LONG_S)
    waiters.close()
    assert [resume.calls for _, resume in parked] == [1, 1, 1]
    waiter = parked[0][0]
    assert waiter.park(Resumes(), LONG_S) is False
    assert waiter.park(Resumes(), LONG_S) is False  # and stays so
    assert len(waiters.alarms) == 0


def test_wake_all_resumes_every_parked_waiter():
    waiters = Waiters(max_waiting=8)
    parked = [(waiters.register(key), Resumes()) for key in ("a", "b")]
    for waiter, resume in parked:
        waiter.park(resume, LONG_S)
    waiters.wake_all()
    assert [resume.calls for _, resume in parked] == [1, 1]
    waiters.close()
