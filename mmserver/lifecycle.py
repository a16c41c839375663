"""The life of one replica's process: start, serve until asked to stop, stop, exit status.

The main thread owns it. It starts the replica (replica.py), then loops: turns signals into a
stop request, asks the replica whether a worker died, tells systemd when the replica is ready
and that it is alive (its watchdog). When the one Shutdown signal is set, by whoever, it runs
the stop sequence of SPEC.md under one deadline, with a watchdog thread that ends the process
if even that overruns, and returns the exit status the first request named.

Signal handlers only put the signal number into a SimpleQueue (reentrant-safe; taking a lock in
a handler can deadlock against the main thread): the main loop turns it into a stop request.
"""
from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time

from mmserver.control import ControlPlane
from mmserver.failures import REDIS_AWAY
from mmserver.logs import LogPipeline
from mmserver.replica import Replica, StartupFailed, StartupRefused
from mmserver.shutdown import (EXIT_OK, EXIT_RESTART, EXIT_USAGE, SIGNAL, STARTUP, STOP_SIGNALS, WORKER,
                               catch_stop_signals)
from mmserver.stop import StopSequence

logger = logging.getLogger(__name__)

# Beyond the shutdown deadline the watchdog gives the last flushes this long, then exits.
WATCHDOG_GRACE_S = 3.0
LOOP_INTERVAL_S = 0.25  # how often the main loop looks at the workers and systemd's watchdog


class Lifecycle:
    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self._logs: LogPipeline | None = None
        # The main loop reads this queue: signal numbers from the handlers (including any that
        # came before this object existed), None as a wake-up.
        self._signals = STOP_SIGNALS
        self._ready_sent = False

    def run(self) -> int:
        """Start, serve until asked to stop, stop; return the exit status."""
        replica = self.replica
        config = replica.config
        self._logs = LogPipeline.start(fmt=config.log_format, level=config.log_level)
        replica.metrics.watch_logs(self._logs.dropped)
        replica.metrics.watch_readiness(replica.readiness.check)
        self._install_signal_handlers()
        replica.shutdown.on_request(lambda: self._signals.put_nowait(None))
        # Counted when asked, not at exit: a scrape can only see it during the drain delay.
        replica.shutdown.on_request(lambda: replica.metrics.shutdown_requested(replica.shutdown.stop_request.kind))
        try:
            replica.start(ControlPlane(replica))
        except StartupRefused as refusal:
            replica.stop_embedded_redis(5.0)
            self._refusal_line(str(refusal))
            self._close_logs()
            return EXIT_USAGE
        except StartupFailed as failure:
            # Known, and a restart may cure it: one line, no traceback (kept for bugs).
            logger.error("start-up failed: %s", failure)
            replica.shutdown.request(f"start-up failed: {failure}", EXIT_RESTART, STARTUP)
        except Exception as error:
            logger.exception("start-up failed")
            replica.shutdown.request(f"start-up failed: {error!r}", EXIT_RESTART, STARTUP)
        else:
            replica.notifier.status("waiting for Redis")
            self._serve()
        return self._stop()

    def _refusal_line(self, message: str) -> None:
        """The one line of a refused start (exit 2), at ERROR in the log's format, written
        whatever MMSERVER_LOG_LEVEL filters: without it an operator would see a silent exit 2.
        Not sent to Sentry: like a configuration error, it is the operator's to fix."""
        self._logs.write_unfiltered(
            logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "%s", (message,), None))

    def _serve(self) -> None:
        """The main thread's loop: signals, worker health, systemd readiness and watchdog."""
        replica = self.replica
        next_watchdog = 0.0
        while not replica.shutdown.is_set():
            try:
                item = self._signals.get(timeout=LOOP_INTERVAL_S)
            except queue.Empty:
                item = None
            if item is not None:
                name = signal.Signals(item).name
                logger.info("received %s: stopping", name)
                replica.shutdown.request(f"{name} received", EXIT_OK, SIGNAL)
                break
            failure = replica.failed_worker()
            if failure is not None:
                replica.shutdown.request(failure, EXIT_RESTART, WORKER)
                break
            if not self._ready_sent and replica.readiness.redis_connected:
                self._ready_sent = True
                logger.info("ready: replica %s, Redis answers", replica.replica_id)
                replica.notifier.ready(status=f"ready: replica {replica.replica_id}")
            interval = replica.notifier.watchdog_interval_s
            if interval and time.monotonic() >= next_watchdog and replica.serving():
                replica.notifier.watchdog()
                next_watchdog = time.monotonic() + interval

    def _stop(self) -> int:
        replica = self.replica
        config = replica.config
        request = replica.shutdown.stop_request
        assert request is not None
        status, reason = request.exit_status, request.reason
        self.announce_stopping(reason)
        # A stop the supervisor asked for (status 0) is routine: INFO, like the last line, so
        # that alerts on WARNING and above only see the stops that need a look.
        logger.log(logging.INFO if status == EXIT_OK else logging.WARNING,
                   "stopping with exit status %d: %s", status, reason)
        replica.answer_long_polls()
        deadline = time.monotonic() + config.drain_delay_s + config.shutdown_timeout_s
        self._start_exit_watchdog(deadline + WATCHDOG_GRACE_S, status)
        self._start_force_exit_listener()
        if config.drain_delay_s and replica.http_started:
            # Readiness answers 503 meanwhile, so load balancers take this replica out
            # before its listeners close.
            time.sleep(config.drain_delay_s)
        steps = StopSequence(deadline, expected_errors=REDIS_AWAY)
        replica.stop(steps)
        if status != EXIT_OK:
            steps.run("sentry-event", lambda: replica.telemetry.report_exit(reason, status))
        if replica.telemetry.enabled:
            steps.run("sentry-flush", lambda: self._flush_sentry(max(0.5, steps.remaining())), min_time_s=1.0)
        replica.stop_embedded_redis(max(1.0, steps.remaining()))
        logger.log(logging.ERROR if status == EXIT_RESTART else logging.INFO,
                   "exit status %d: %s", status, reason)
        self._close_logs()
        return status

    def announce_stopping(self, reason: str) -> None:
        """Readiness says stopping and systemd hears STOPPING=1; never between an operator's
        undrain and its own status line (readiness.changing())."""
        with self.replica.readiness.changing() as readiness:
            readiness.mark_stopping()
            self.replica.notifier.stopping(status=f"stopping: {reason}")

    def _flush_sentry(self, timeout: float) -> None:
        # Half a second at least even past the deadline: the exit event is why we stopped
        # gracefully, and the exit watchdog still bounds the whole sequence.
        if not self.replica.telemetry.flush(timeout):
            logger.warning("Sentry did not receive every event before the deadline")

    def _close_logs(self) -> None:
        if self._logs:
            closer = threading.Thread(target=self._logs.stop, name="log-drain", daemon=True)
            closer.start()
            closer.join(5.0)

    # --- when stopping gracefully is not possible ---

    def _start_exit_watchdog(self, at: float, status: int) -> None:
        def watchdog() -> None:
            time.sleep(max(0.0, at - time.monotonic()))
            self._hard_exit(status, f"mmserver: stop sequence overran its deadline; exiting with status {status}")

        threading.Thread(target=watchdog, name="exit-watchdog", daemon=True).start()

    def _start_force_exit_listener(self) -> None:
        """A second SIGTERM/SIGINT during the stop sequence means: stop now, status 1."""

        def listen() -> None:
            while True:
                item = self._signals.get()
                if item is None:
                    continue
                self._hard_exit(EXIT_RESTART, f"mmserver: {signal.Signals(item).name} during the stop "
                                              f"sequence: forced exit with status {EXIT_RESTART}")

        threading.Thread(target=listen, name="force-exit", daemon=True).start()

    def _hard_exit(self, status: int, line: str) -> None:
        """Exit now, after at most half a second for the log queue (which says why)."""
        _last_words(line)
        if self._logs:
            flusher = threading.Thread(target=self._logs.stop, name="log-drain", daemon=True)
            flusher.start()
            flusher.join(0.5)
        os._exit(status)

    def _install_signal_handlers(self) -> None:
        catch_stop_signals()  # the command did already; kept for any other caller of run()

        def thread_died(args: threading.ExceptHookArgs) -> None:
            name = args.thread.name if args.thread else "?"
            logger.error("thread %s died", name,
                         exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
            self.replica.shutdown.request(f"thread {name} died: {args.exc_type.__name__}", EXIT_RESTART, WORKER)

        threading.excepthook = thread_died


def _last_words(line: str) -> None:
    """Write straight to stderr: used when the log pipeline itself may be stuck."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except Exception:
        pass
