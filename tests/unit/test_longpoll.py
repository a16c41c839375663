"""The long-poll loop (mmserver/http/longpoll.py) across parked passes, with a fake store."""
from __future__ import annotations

from mmserver.http import longpoll
from mmserver.http.waiters import Waiters

LONG_S = 30.0


class Store:
    def __init__(self) -> None:
        self.version = 1
        self.reads = 0

    def read(self) -> int:
        self.reads += 1
        return self.version


def newer(first: int):
    return lambda version: version > first


def test_a_parked_long_poll_resumes_after_a_wake_and_answers_the_new_state():
    waiters, store = Waiters(max_waiting=4), Store()
    env = {longpoll.PARKING: True}
    answer = longpoll.start(env, waiters, "t", store.read, newer, LONG_S)
    assert answer.parked and longpoll.parked(env) and longpoll.resuming(env)
    waiter, timeout = env[longpoll.PARK]
    assert 0 < timeout <= LONG_S and waiters.waiting == 1
    # A pass resumed with nothing new: re-read, parked again.
    answer = longpoll.resume(env)
    assert answer.parked and store.reads == 2
    store.version = 2
    answer = longpoll.resume(env)
    assert answer == longpoll.Answer(2)
    assert not longpoll.resuming(env) and not longpoll.parked(env)
    assert waiters.waiting == 0


def test_without_parking_the_loop_waits_in_the_thread():
    waiters, store = Waiters(max_waiting=4), Store()
    answer = longpoll.start({}, waiters, "t", store.read, newer, 0.05)
    assert answer == longpoll.Answer(1)  # timed out with the unchanged state
    assert waiters.waiting == 0


def test_at_the_cap_it_answers_at_once_busy_and_after_close_not_busy():
    waiters, store = Waiters(max_waiting=0), Store()
    assert longpoll.start({longpoll.PARKING: True}, waiters, "t", store.read, newer, LONG_S) == \
        longpoll.Answer(1, busy=True)
    waiters = Waiters(max_waiting=4)
    waiters.close()
    assert longpoll.start({longpoll.PARKING: True}, waiters, "t", store.read, newer, LONG_S) == longpoll.Answer(1)


def test_close_ends_a_parked_long_poll_at_its_next_pass():
    waiters, store = Waiters(max_waiting=4), Store()
    env = {longpoll.PARKING: True}
    assert longpoll.start(env, waiters, "t", store.read, newer, LONG_S).parked
    waiters.close()
    assert longpoll.resume(env) == longpoll.Answer(1)
    assert waiters.waiting == 0


def test_an_expired_deadline_answers_instead_of_parking():
    waiters, store = Waiters(max_waiting=4), Store()
    env = {longpoll.PARKING: True}
    assert longpoll.start(env, waiters, "t", store.read, newer, 0.0) == longpoll.Answer(1)
    assert waiters.waiting == 0


def test_a_failing_read_releases_the_waiter():
    waiters = Waiters(max_waiting=4)
    env = {longpoll.PARKING: True}
    reads = iter([1, RuntimeError("redis away")])

    def read():
        value = next(reads)
        if isinstance(value, Exception):
            raise value
        return value

    assert longpoll.start(env, waiters, "t", read, newer, LONG_S).parked
    try:
        longpoll.resume(env)
    except RuntimeError:
        pass
    else:
        raise AssertionError("the read's error must reach the caller (errors.py answers it)")
    assert waiters.waiting == 0 and not longpoll.resuming(env)


def test_abandon_releases_a_parked_long_poll():
    waiters, store = Waiters(max_waiting=4), Store()
    env = {longpoll.PARKING: True}
    assert longpoll.start(env, waiters, "t", store.read, newer, LONG_S).parked
    longpoll.abandon(env)
    assert waiters.waiting == 0
    longpoll.abandon(env)  # twice: nothing left to release
    assert waiters.waiting == 0
