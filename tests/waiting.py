"""Waiting for something another thread or process does, with bounds that hold on a loaded machine.

Tests wait for an outcome (an event set, a counter reached) with a generous bound instead of
sleeping a fixed time and asserting a tight wall-clock limit: on a busy 2-core CI machine a
thread can be descheduled for hundreds of milliseconds, and a test that asserted "within 50 ms"
then fails for no fault of the code.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

# How long a test waits for something that normally takes milliseconds: long enough for a loaded
# machine, short enough that a real failure still ends the test quickly.
PROMPTLY_S = 5.0


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, *,
               what: str | None = None, ignoring: tuple[type[BaseException], ...] = ()) -> T | bool:
    """Call `predicate` until it returns a true value, at most `timeout` seconds; return that
    value, or False if it never came (`assert wait_until(...)` reads as the expectation).

    With `what` (what is awaited, in words) a timeout raises an AssertionError that names it
    instead, for a wait whose value the test goes on to use. An exception of a type in `ignoring`
    raised by `predicate` counts as "not yet" (a server still starting, a node being failed over).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except ignoring:
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            if what is not None:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            return False
        time.sleep(interval)
