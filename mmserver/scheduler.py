"""Periodic jobs on an APScheduler BackgroundScheduler, watched.

APScheduler logs a job that raises and goes on, so a job could fail forever unnoticed; and its
shutdown(wait=True) has no timeout. This wrapper records every run of every job (last success,
last error, consecutive failures), reports a job that has not completed a run for a while as
stalled (which gates the systemd watchdog and shows in /admin/status), and bounds the stop.

Failures are logged two ways. An *expected* failure (one of `expected_errors`, anywhere in the
exception's cause chain: Redis away, which the subscriber's reconnect budget governs) is one
WARNING line, the first time and then at most once per `EXPECTED_REPEAT_S` while it lasts: a
Redis outage is not a bug, and its traceback says nothing. Anything else is a bug: logged with
its traceback the first time, every 20th time in a row, and whenever its type changes.

APScheduler's own warnings go through `_ThrottledSchedulerLog`: while a run hangs (a frozen
Redis) it would otherwise warn "skipped: maximum number of running instances reached" at every
interval, ten lines a second for a 100 ms tick.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from mmserver.failures import caused_by

logger = logging.getLogger(__name__)

# While a job keeps failing for an expected reason, repeat the one-line warning this often.
EXPECTED_REPEAT_S = 60.0
# While a job keeps failing for another reason, repeat its traceback every this many failures.
UNEXPECTED_REPEAT_RUNS = 20
# The same APScheduler warning (same text, same job) at most once per this many seconds.
LIBRARY_WARNING_REPEAT_S = 60.0


class _ThrottledSchedulerLog(logging.LoggerAdapter):
    """APScheduler's logger (`logger=` option), passing everything through but repeats of one
    warning for one job, which it holds back for LIBRARY_WARNING_REPEAT_S and then counts."""

    def __init__(self, target: logging.Logger, clock: Callable[[], float]) -> None:
        super().__init__(target, {})
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[tuple, list] = {}  # (message, job) -> [next allowed time, held back]

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        if level == logging.WARNING and self.isEnabledFor(level):
            key = (msg, str(args[0]).split(" (trigger", 1)[0] if args else None)
            now = self._clock()
            with self._lock:
                entry = self._held.setdefault(key, [now, 0])
                if now < entry[0]:
                    entry[1] += 1
                    return
                held, entry[0], entry[1] = entry[1], now + LIBRARY_WARNING_REPEAT_S, 0
            if held:
                msg = f"{msg} ({held} similar warnings suppressed)"
        super().log(level, msg, *args, **kwargs)


@dataclass
class JobRecord:
    name: str
    interval_s: float
    runs: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_started: float | None = None  # monotonic
    last_finished: float | None = None  # monotonic
    last_success: float | None = None  # monotonic
    last_success_wall: float | None = None  # Unix time, for status
    last_duration_s: float | None = None
    last_error: str | None = None
    last_result: object = None
    last_error_type: type | None = None
    last_warned: float | None = None  # monotonic: the last line logged for an expected failure
    running: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Scheduler:
    def __init__(self, *, stall_after_s: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 expected_errors: tuple[type[BaseException], ...] = ()) -> None:
        self._stall_after_s = stall_after_s
        self._expected_errors = expected_errors
        self._clock = clock
        self._started_at: float | None = None
        self._jobs: dict[str, JobRecord] = {}
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=4)},
            # One instance of a job at a time; a late run is folded into the next one.
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 5},
            timezone="UTC",
            logger=_ThrottledSchedulerLog(logging.getLogger("apscheduler.scheduler"), clock),
        )

    def add_job(self, name: str, func: Callable[[], object], interval_s: float) -> None:
        record = JobRecord(name=name, interval_s=interval_s)
        self._jobs[name] = record
        self._scheduler.add_job(
            self._run, "interval", args=(record, func), seconds=interval_s, id=name, name=name,
            next_run_time=datetime.now(timezone.utc),  # first run at once, not one interval late
        )

    def _run(self, record: JobRecord, func: Callable[[], object]) -> None:
        started = self._clock()
        with record.lock:
            record.running = True
            record.last_started = started
        try:
            result = func()
        except Exception as error:
            finished = self._clock()
            expected = caused_by(error, self._expected_errors)
            with record.lock:
                record.runs += 1
                record.failures += 1
                record.consecutive_failures += 1
                record.last_error = f"{type(error).__name__}: {error}"
                record.last_finished = finished
                record.last_duration_s = finished - started
                record.running = False
                repeated = record.consecutive_failures
                changed = record.last_error_type is not type(error)
                record.last_error_type = type(error)
                warn = expected and (repeated == 1 or changed or record.last_warned is None
                                     or finished - record.last_warned >= EXPECTED_REPEAT_S)
                if warn:
                    record.last_warned = finished
            if expected:
                if warn:
                    logger.warning("job %s failed (%d in a row): %s", record.name, repeated, record.last_error)
            # A bug: with its traceback the first time, when it changes, and every 20th time,
            # so a job that fails each tick does not flood the logs; Sentry's logging
            # integration turns the first one into an event.
            elif repeated == 1 or changed or repeated % UNEXPECTED_REPEAT_RUNS == 0:
                logger.exception("job %s failed (%d in a row)", record.name, repeated)
            return
        finished = self._clock()
        with record.lock:
            record.runs += 1
            if record.consecutive_failures:
                logger.info("job %s recovered after %d failures", record.name, record.consecutive_failures)
            record.consecutive_failures = 0
            record.last_error_type = None
            record.last_warned = None
            record.last_finished = finished
            record.last_success = finished
            record.last_success_wall = time.time()
            record.last_duration_s = finished - started
            record.last_result = result
            record.running = False

    def start(self) -> None:
        self._started_at = self._clock()
        self._scheduler.start()

    @property
    def running(self) -> bool:
        return self._scheduler.running

    def stalled_jobs(self) -> list[str]:
        """Jobs that have not finished a run (success or failure) for too long.

        A run that fails still counts as alive: failures are Redis being away, which the
        subscriber's reconnect budget governs. Stalled means hung or never scheduled.
        """
        if self._started_at is None:
            return []
        now = self._clock()
        stalled = []
        for record in self._jobs.values():
            limit = max(self._stall_after_s, 10 * record.interval_s)
            reference = record.last_finished or self._started_at
            if now - reference > limit:
                stalled.append(record.name)
        return stalled

    def is_alive(self) -> bool:
        return self._scheduler.running and not self.stalled_jobs()

    def stop(self, timeout: float) -> bool:
        """Stop scheduling and wait up to `timeout` for running jobs; True if they all ended.

        shutdown(wait=True) never times out, so it runs in a helper thread that is joined
        with the timeout. Jobs check the shutdown event between units of work, so they end
        quickly; a job stuck in I/O is abandoned (its thread is a daemon).
        """
        if not self._scheduler.running:
            return True
        waiter = threading.Thread(target=self._scheduler.shutdown, kwargs={"wait": True},
                                  name="scheduler-stop", daemon=True)
        waiter.start()
        waiter.join(timeout)
        return not waiter.is_alive()

    def status(self) -> dict:
        now = self._clock()
        jobs = {}
        for record in self._jobs.values():
            with record.lock:
                jobs[record.name] = {
                    "interval_s": record.interval_s,
                    "runs": record.runs,
                    "failures": record.failures,
                    "consecutive_failures": record.consecutive_failures,
                    "running": record.running,
                    "last_success_age_s": None if record.last_success is None
                    else round(now - record.last_success, 3),
                    "last_duration_s": None if record.last_duration_s is None
                    else round(record.last_duration_s, 4),
                    "last_error": record.last_error,
                    "last_result": _plain(record.last_result),
                }
        return {"alive": self.is_alive(), "running": self.running, "stalled": self.stalled_jobs(), "jobs": jobs}

    def last_success_wall(self, name: str) -> float | None:
        record = self._jobs.get(name)
        return record.last_success_wall if record else None


def _plain(result: Any) -> dict | None:
    """A job's result as the status shows it: a dict, or a dataclass's fields (the ticker's
    TickResult); anything else is left out."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return result if isinstance(result, dict) else None
