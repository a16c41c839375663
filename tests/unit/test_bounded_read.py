"""BoundedRead: a hung read costs callers at most wait_s, and only one thread however many call."""
from __future__ import annotations

import threading
import time

import pytest

from mmserver.bounded_read import BoundedRead, ReadTimedOut
from tests.waiting import wait_until


class Source:
    """A read that answers the next value at once, or hangs while `hang` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.hang = threading.Event()
        self.release = threading.Event()
        self.fail: Exception | None = None

    def __call__(self) -> int:
        self.calls += 1
        if self.hang.is_set():
            self.release.wait(30)
        if self.fail is not None:
            raise self.fail
        return self.calls


def readers() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "bounded-read-test"]


def test_a_read_that_answers_is_fresh():
    reader = BoundedRead(Source(), wait_s=5, name="test")
    first, second = reader.get(), reader.get()
    assert (first.value, first.error, first.fresh) == (1, "", True)
    assert second.value == 2  # every call reads again: no caching of fresh values
    assert reader.fresh() == 3


def test_a_hung_read_answers_the_last_value_after_the_bound_with_one_thread_for_all_callers():
    source = Source()
    reader = BoundedRead(source, wait_s=0.2, name="test")
    assert reader.get().value == 1
    source.hang.set()
    try:
        started = time.monotonic()
        readings = [reader.get() for _ in range(5)]
        elapsed = time.monotonic() - started
        # each call waited its bound, not the read's 30 s
        assert 5 * 0.2 <= elapsed < 10, elapsed
        for reading in readings:
            assert reading.value == 1 and not reading.fresh
            assert reading.error == "ReadTimedOut: no answer within 0.2 s"
            assert reading.age_s is not None and reading.age_s >= 0.2
        # the five callers shared the one read in flight
        assert source.calls == 2
        assert readers() == ["bounded-read-test"]
        with pytest.raises(ReadTimedOut):
            reader.fresh()
    finally:
        source.hang.clear()
        source.release.set()
    assert wait_until(lambda: not readers(), 5)
    assert reader.get().fresh


def test_a_failed_read_reports_its_error_and_no_value_before_any_success():
    source = Source()
    source.fail = ConnectionError("Redis away")
    reader = BoundedRead(source, wait_s=5, name="test")
    reading = reader.get()
    assert (reading.value, reading.error, reading.age_s) == (None, "ConnectionError: Redis away", None)
    with pytest.raises(ConnectionError):
        reader.fresh()
    source.fail = None
    assert reader.get().value == 3


def test_wait_must_be_positive():
    with pytest.raises(ValueError):
        BoundedRead(Source(), wait_s=0, name="test")
