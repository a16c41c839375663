"""The long-poll loop shared by GET /v1/tickets/{id}?wait= and GET /v1/events?wait=.

    register a waiter -> read -> until done or the deadline: wait for a wake -> re-read

Where the HTTP server can park requests (server.py puts `PARKING` in the WSGI environ), a long
poll that must wait does not sleep in its worker thread: it stores its state in the environ,
asks to be parked (`PARK`) and its responder returns. The server then releases the worker
without answering; the waiter's wake (or its timeout) hands the same request, with the same
environ, back to a worker, which runs the app again; the responder finds the state here
(`resuming`) and goes on from the re-read. So a waiting client costs its connection and a few
objects, not a thread. Without `PARKING` (Falcon's test client) the loop sleeps in the thread.

Every pass after a wake re-reads the store, which re-checks the caller's access: the wake only
says "something changed", the store says what (and the view cache was evicted by the same
event before the waiters were woken).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Generic, MutableMapping, NamedTuple, TypeVar

import falcon

from mmserver.http.waiters import Waiter, Waiters

T = TypeVar("T")

# environ keys. PARKING: set by the server, this request can be parked. PARK: set here, the
# (waiter, timeout) to park on when the app returns. STATE: the long-poll across passes.
PARKING = "mmserver.parking"
PARK = "mmserver.park"
_STATE = "mmserver.longpoll"
# What a long-poll answered early (this replica holds its maximum of waiters) tells the client
# to wait before polling again, so that it backs off instead of spinning.
BUSY_RETRY_AFTER_S = 2


class Answer(NamedTuple, Generic[T]):
    """`result` to answer now; `busy`: answered early because the replica holds its maximum of
    waiters (the caller adds Retry-After); `parked`: nothing to answer in this pass."""

    result: T | None
    busy: bool = False
    parked: bool = False


def respond(resp: falcon.Response, answer: Answer, on_busy: Callable[[], None],
            render: Callable[[Any], Any] = lambda result: result) -> None:
    """Set `resp` from a long-poll's answer: nothing while parked (a later pass answers), and
    Retry-After (counted by `on_busy`) when answered early for want of room."""
    if answer.parked:
        return
    if answer.busy:
        resp.set_header("Retry-After", str(BUSY_RETRY_AFTER_S))
        on_busy()
    resp.media = render(answer.result)


class _State:
    __slots__ = ("waiters", "waiter", "deadline", "read", "done", "recheck_s")

    def __init__(self, waiters: Waiters, waiter: Waiter, deadline: float, read: Callable[[], Any],
                 done: Callable[[Any], bool], recheck_s: float | None) -> None:
        self.waiters, self.waiter, self.deadline, self.read, self.done = waiters, waiter, deadline, read, done
        self.recheck_s = recheck_s


def resuming(env: MutableMapping[str, Any]) -> bool:
    """True in a pass that resumes a parked long-poll: the caller was identified, limited and
    validated in the first pass; go straight to `resume`."""
    return _STATE in env


def parked(env: MutableMapping[str, Any]) -> bool:
    """True once a pass has asked to park: its response is never sent (metrics skip it)."""
    return PARK in env


def start(env: MutableMapping[str, Any], waiters: Waiters, key: str, read: Callable[[], T],
          until: Callable[[T], Callable[[T], bool]], wait_s: float,
          recheck_s: float | None = None) -> Answer[T]:
    """Long-poll on waiter key `key`: answer `read()` once `until(first_read)(result)` holds,
    else after `wait_s`. `recheck_s`: re-read at least this often even without a wake."""
    deadline = time.monotonic() + wait_s
    # Registered before the first read: an event between that read and the wait is kept.
    waiter = waiters.register(key)
    if waiter is None:  # cap reached or stopping: answer at once
        return Answer(read(), busy=not waiters.closed)
    try:
        result = read()
    except BaseException:
        waiters.unregister(waiter)
        raise
    state = _State(waiters, waiter, deadline, read, until(result), recheck_s)
    return _loop(env, state, result)


def resume(env: MutableMapping[str, Any]) -> Answer:
    """The pass after a park: re-read, then answer or park again."""
    state: _State = env[_STATE]
    env.pop(PARK, None)
    try:
        result = state.read()
    except BaseException:
        _finish(env, state)
        raise
    return _loop(env, state, result)


def abandon(env: MutableMapping[str, Any]) -> None:
    """The parked request will not be answered (its connection is closed): release its waiter."""
    state = env.get(_STATE)
    if state is not None:
        _finish(env, state)


def end_wait(env: MutableMapping[str, Any]) -> None:
    """The client stopped sending (it half-closed its connection) while parked: it may still
    read, so it gets its answer, now, with what is current, instead of waiting on. The server
    then resumes the request (a parked request's state is touched by no worker)."""
    state = env.get(_STATE)
    if state is not None:
        state.deadline = time.monotonic()


def _loop(env: MutableMapping[str, Any], state: _State, result: Any) -> Answer:
    waiter = state.waiter
    try:
        while not state.done(result):
            remaining = state.deadline - time.monotonic()
            if remaining <= 0 or waiter.closed:
                break
            step = remaining if state.recheck_s is None else min(remaining, state.recheck_s)
            if env.get(PARKING):
                # The server parks the request once this pass has unwound; a wake arriving
                # before then is recorded on the waiter and resumes it at once.
                env[_STATE] = state
                env[PARK] = (waiter, step)
                return Answer(None, parked=True)
            waiter.wait(step)
            # Woken (or timed out): the event says "something changed", the store says what.
            result = state.read()
    except BaseException:
        _finish(env, state)
        raise
    _finish(env, state)
    return Answer(result)


def _finish(env: MutableMapping[str, Any], state: _State) -> None:
    env.pop(_STATE, None)
    env.pop(PARK, None)
    state.waiters.unregister(state.waiter)
