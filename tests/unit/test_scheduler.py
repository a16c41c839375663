import threading
import time

from mmserver import scheduler as scheduler_module
from mmserver.scheduler import Scheduler
from mmserver.ticker import TickResult
from tests.waiting import wait_until


def test_a_job_runs_at_once_and_then_periodically():
    runs = []
    scheduler = Scheduler()
    scheduler.add_job("tick", lambda: runs.append(time.monotonic()) or TickResult(matches_claimed=1), 0.05)
    scheduler.start()
    try:
        assert wait_until(lambda: len(runs) >= 4)
        status = scheduler.status()
        assert status["alive"] and status["jobs"]["tick"]["runs"] >= 4
        # The ticker's TickResult, as /admin/status shows it: its fields.
        assert status["jobs"]["tick"]["last_result"]["matches_claimed"] == 1
        assert status["jobs"]["tick"]["last_result"]["stopped_early"] is False
    finally:
        assert scheduler.stop(5)


def test_a_failing_job_is_recorded_and_keeps_being_scheduled(caplog):
    calls = []

    def failing():
        calls.append(1)
        raise ValueError("redis away")

    scheduler = Scheduler()
    scheduler.add_job("tick", failing, 0.02)
    scheduler.start()
    try:
        assert wait_until(lambda: len(calls) >= 3)
        job = scheduler.status()["jobs"]["tick"]
        assert job["failures"] >= 3 and job["consecutive_failures"] >= 3
        assert job["last_error"] == "ValueError: redis away"
        assert scheduler.is_alive()  # failing is not stalled
        assert caplog.text.count("job tick failed") == 1  # not one traceback per tick
    finally:
        scheduler.stop(5)


class RedisAway(ConnectionError):
    pass


class StoreDown(Exception):
    pass


def test_an_expected_failure_is_one_warning_line_without_traceback(caplog):
    """Redis away: a tick fails every run, the log says so once (and again once a minute)."""
    calls = []
    clock = [1000.0]

    def away():
        calls.append(1)
        try:
            raise RedisAway("connection refused")
        except RedisAway as error:
            raise StoreDown("Redis is unavailable: connection refused") from error

    scheduler = Scheduler(expected_errors=(RedisAway,), clock=lambda: clock[0])
    scheduler.add_job("tick", away, 0.01)
    scheduler.start()
    try:
        assert wait_until(lambda: len(calls) >= 2 * scheduler_module.UNEXPECTED_REPEAT_RUNS + 1)
        clock[0] += scheduler_module.EXPECTED_REPEAT_S
        seen = len(calls)
        assert wait_until(lambda: len(calls) >= seen + 3)
    finally:
        scheduler.stop(5)
    lines = [r for r in caplog.records if r.name == "mmserver.scheduler"]
    assert [r.levelname for r in lines] == ["WARNING", "WARNING"], [r.getMessage() for r in lines]
    assert all(r.exc_info is None for r in lines)
    assert lines[0].getMessage() == "job tick failed (1 in a row): StoreDown: Redis is unavailable: connection refused"
    assert lines[1].getMessage().startswith("job tick failed (")


def test_a_bug_after_an_outage_is_logged_with_its_traceback(caplog):
    runs = []

    def failing():
        runs.append(1)
        if len(runs) <= 3:
            raise RedisAway("connection refused")
        raise KeyError("typo")

    scheduler = Scheduler(expected_errors=(RedisAway,))
    scheduler.add_job("tick", failing, 0.02)
    scheduler.start()
    try:
        assert wait_until(lambda: len(runs) >= 5)
    finally:
        scheduler.stop(5)
    lines = [r for r in caplog.records if r.name == "mmserver.scheduler"]
    assert lines[0].levelname == "WARNING" and lines[0].exc_info is None
    assert lines[1].levelname == "ERROR" and lines[1].exc_info[0] is KeyError
    assert lines[1].getMessage() == "job tick failed (4 in a row)"
    assert len(lines) == 2  # the same bug again is not repeated every run


def test_runs_skipped_behind_a_hung_run_are_warned_about_once(caplog):
    """APScheduler warns at every interval that a run was skipped while one hangs (a frozen
    Redis): one line per job, not ten a second."""
    release = threading.Event()
    runs = []
    scheduler = Scheduler()
    scheduler.add_job("tick", lambda: runs.append(1) or release.wait(30), 0.02)
    scheduler.start()
    try:
        time.sleep(1.0)  # about 50 intervals while the first run hangs
        assert len(runs) == 1
    finally:
        release.set()
        scheduler.stop(5)
    skipped = [r for r in caplog.records if "maximum number of running instances" in r.getMessage()]
    assert len(skipped) == 1, [r.getMessage() for r in skipped]
    assert skipped[0].name == "apscheduler.scheduler" and 'job "tick' in skipped[0].getMessage()


def test_a_hung_job_is_reported_stalled_and_stop_is_bounded():
    release = threading.Event()
    scheduler = Scheduler(stall_after_s=0.3)
    scheduler.add_job("tick", lambda: release.wait(30), 0.02)
    scheduler.start()
    try:
        assert wait_until(lambda: scheduler.stalled_jobs() == ["tick"], timeout=3)
        assert not scheduler.is_alive()
        started = time.monotonic()
        assert scheduler.stop(0.3) is False
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
