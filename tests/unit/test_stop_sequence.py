import threading
import time

from mmserver.stop import StopSequence


def test_steps_run_in_order_and_report_done():
    order = []
    steps = StopSequence(time.monotonic() + 5)
    assert steps.run("a", lambda: order.append("a"))
    assert steps.run("b", lambda: order.append("b"))
    assert order == ["a", "b"]
    assert [r.outcome for r in steps.results] == ["done", "done"]


def test_an_overrunning_step_is_skipped_at_the_deadline_and_the_next_still_runs():
    release = threading.Event()
    steps = StopSequence(time.monotonic() + 0.3)
    started = time.monotonic()
    assert not steps.run("stuck", lambda: release.wait(30))
    assert time.monotonic() - started < 1.0
    ran = []
    assert steps.run("flush", lambda: ran.append(True), min_time_s=0.5)
    assert ran == [True]
    assert [r.outcome for r in steps.results] == ["overran", "done"]
    assert not steps.run("late", lambda: None)
    assert steps.results[-1].outcome == "skipped"
    release.set()


def test_a_failing_step_is_logged_and_the_sequence_goes_on(caplog):
    steps = StopSequence(time.monotonic() + 5)

    def boom():
        raise RuntimeError("sentry down")

    assert not steps.run("sentry-flush", boom)
    assert steps.run("logs", lambda: None)
    assert "sentry-flush failed" in caplog.text


class Away(ConnectionError):
    pass


class Wrapped(Exception):
    pass


def test_an_expected_failure_is_one_warning_line_and_a_bug_keeps_its_traceback(caplog):
    steps = StopSequence(time.monotonic() + 5, expected_errors=(Away,))

    def redis_away():
        try:
            raise Away("connection refused")
        except Away as error:
            raise Wrapped("store is unavailable") from error  # as the store wraps redis-py

    def bug():
        try:
            raise Away("connection refused")
        except Away:
            raise KeyError("typo")  # raised *during*, not *from*: a bug

    assert not steps.run("replica-record", redis_away)
    assert not steps.run("sentry-event", bug)
    away, typo = caplog.records
    assert (away.levelname, away.getMessage(), away.exc_info) == (
        "WARNING", "stop step replica-record failed: Wrapped: store is unavailable", None)
    assert typo.levelname == "ERROR" and typo.exc_info and typo.exc_info[0] is KeyError
