import threading
import time

from mmserver.scheduler import Scheduler


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_a_job_runs_at_once_and_then_periodically():
    runs = []
    scheduler = Scheduler()
    scheduler.add_job("tick", lambda: runs.append(time.monotonic()) or {"claimed": 1}, 0.05)
    scheduler.start()
    try:
        assert wait_until(lambda: len(runs) >= 4)
        status = scheduler.status()
        assert status["alive"] and status["jobs"]["tick"]["runs"] >= 4
        assert status["jobs"]["tick"]["last_result"] == {"claimed": 1}
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
