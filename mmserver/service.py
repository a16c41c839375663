"""Composition root and lifecycle of one replica: start, wait for the stop signal, stop, exit.

Everything is built here from the Config and handed to its users through constructors. The
main thread owns the lifecycle: it waits on the signal queue, watches the workers, talks to
systemd, and when the one Shutdown signal is set it runs the stop sequence of SPEC.md in order,
each step bounded by one deadline, with a watchdog thread that ends the process if even that
overruns.

Signal handlers only put the signal number into a SimpleQueue (reentrant-safe; taking a lock in
a handler can deadlock against the main thread): the main loop turns it into a stop request.
"""
from __future__ import annotations

import logging
import os
import queue
import resource
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Mapping

from mmserver import __version__, admin_token
from mmserver.backoff import Backoff
from mmserver.bounded_read import BoundedRead
from mmserver.config import Config, env_name
from mmserver.embedded_redis import DataDirInUse, EmbeddedRedis
from mmserver.failures import REDIS_AWAY
from mmserver.http.app import create_public_app
from mmserver.http.health import Liveness, ReadinessResource
from mmserver.http.server import HttpServer, Listener, ListenError
from mmserver.http.waiters import Waiters
from mmserver.logs import LogPipeline
from mmserver.metrics import Metrics
from mmserver.notify import SystemdNotifier
from mmserver.readiness import Readiness
from mmserver.redis_client import RedisURLError, connect, connect_subscriber
from mmserver.scheduler import Scheduler
from mmserver.shutdown import EXIT_OK, EXIT_RESTART, EXIT_USAGE, Shutdown
from mmserver.stop import StopSequence
from mmserver.store import Store
from mmserver.subscriber import Subscriber
from mmserver.store.deliveries import Deliveries
from mmserver.store.keys import EVENTS_CHANNEL, VIEWS_CHANNEL
from mmserver.store.viewcache import ViewCache
from mmserver.webhooks.retry import RetryPolicy
from mmserver.webhooks.sender import Sender
from mmserver.webhooks.worker import DeliveryWorker
from mmserver.telemetry import Telemetry
from mmserver.ticker import Ticker
from mmserver_admin.app import create_admin_app
from mmserver_admin.resources import WebhooksNotConfigured
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

REPLICA_HEARTBEAT_S = 2.0
SUBSCRIBER_HEALTH_S = 1.0
PUBLIC_LISTENER = 0  # index of the public API among the HTTP server's listeners
# The HTTP server's listeners in order: the setting that names each, and what it serves.
LISTENERS = (("listen", "public API"), ("admin_listen", "control plane"))
REPLICA_TTL_S = 10.0
# Beyond the shutdown deadline the watchdog gives the last flushes this long, then exits.
WATCHDOG_GRACE_S = 3.0
HTTP_DRAIN_RESERVE_S = 2.0
# The control-plane listener's own worker pool: probes (/healthz, /readyz), /admin/* and /metrics
# never wait behind public requests (long-polls, calls stuck on a slow Redis). Each of its
# requests is bounded (STATUS_READ_WAIT_S below), so a few workers are enough.
ADMIN_THREADS = 4
# How long /admin/status and /metrics wait for Redis stats before answering with the last ones
# (and store_error): a frozen Redis would otherwise hold them for the socket timeout (5 s).
STATUS_READ_WAIT_S = 0.5
# waitress's connection limit counts the connections in its socket map, which parked long-polls
# leave (http/server.py): this many connections besides them (every other client, keep-alive or
# not; past it the oldest idle keep-alive connections are closed for new clients).
OTHER_CONNECTIONS = 1000
OPERATOR_FINISH_REASON = "finished by operator"  # the reason a match ended from mmadmin carries


class LateBoundApp:
    """A WSGI app slot: the listener is bound before the app behind it is built."""

    def __init__(self) -> None:
        self.app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


class StartupRefused(Exception):
    """Start-up cannot go on because of how the service is configured or deployed: exit 2."""


class Service:
    def __init__(self, config: Config, *, environ: Mapping[str, str]) -> None:
        self.config = config
        self.shutdown = Shutdown()
        self.readiness = Readiness()
        self.notifier = SystemdNotifier.from_environ(environ)
        self.replica_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.started_at = time.time()
        self.state = "starting"
        # Held for every change of `state` and of the drain flags (drain, undrain, the stop
        # sequence), so that an undrain racing the stop cannot leave a stopping replica "running".
        self._lifecycle = threading.Lock()
        # The main loop reads this queue: signal numbers from the handlers, None as a wake-up.
        self._signals: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._logs: LogPipeline | None = None
        self._http: HttpServer | None = None
        self._embedded: EmbeddedRedis | None = None
        self._telemetry = Telemetry(config.sentry_dsn, release=f"mmserver@{__version__}",
                                    server_name=socket.gethostname())
        self._scheduler: Scheduler | None = None
        self._subscriber: Subscriber | None = None
        self._store: Store | None = None
        self._store_status: BoundedRead[dict] | None = None
        self._waiters: Waiters | None = None
        self._view_cache: ViewCache | None = None
        self._metrics = Metrics()
        self._ticker: Ticker | None = None
        self._admin_token: str | None = config.admin_token
        self._ready_sent = False
        self._http_started = False
        self._redis_clients: list = []
        self._webhooks: DeliveryWorker | None = None  # None: no [webhooks] configured
        self._dead_letters: Deliveries | None = None  # the control plane's view of the same state

    # --- run ---

    def run(self) -> int:
        """Start, serve until asked to stop, stop; return the exit status."""
        self._logs = LogPipeline.start(fmt=self.config.log_format, level=self.config.log_level)
        self._metrics.watch_logs(self._logs.dropped)
        self._metrics.watch_readiness(self.readiness.check)
        self._install_signal_handlers()
        self.shutdown.on_request(lambda: self._signals.put_nowait(None))
        self.shutdown.on_request(self._count_shutdown)
        try:
            self._start()
        except StartupRefused as refusal:
            self._stop_embedded_redis(5.0)
            logger.error("%s", refusal)
            self._close_logs()
            return EXIT_USAGE
        except Exception as error:
            logger.exception("start-up failed")
            self.shutdown.request(f"start-up failed: {error!r}", EXIT_RESTART)
        else:
            self._serve()
        return self._stop()

    @staticmethod
    def _raise_open_file_limit(connections: int) -> None:
        """Raise the soft limit of open files so that `connections` fit (each parked long-poll
        is one), up to the hard limit; say so if that is not enough."""
        # Redis connections, the log files, the listeners, pipes: a margin for what is not a client
        needed = connections + 256
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or soft >= needed:
            return
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:
            logger.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, error)
            target = soft
        if target < needed:
            logger.warning("the open-file limit (%d) is below the %d that %s long-polls and %d other "
                           "connections need: raise it (LimitNOFILE=, ulimit -n) or lower %s", target,
                           needed, env_name("max_longpolls"), OTHER_CONNECTIONS, env_name("max_longpolls"))

    def _start(self) -> None:
        config = self.config
        self._raise_open_file_limit(config.max_longpolls + OTHER_CONNECTIONS)
        self._public_slot, self._admin_slot = LateBoundApp(), LateBoundApp()
        self._http = HttpServer([Listener(config.listen, self._public_slot),
                                 Listener(config.admin_listen, self._admin_slot, ADMIN_THREADS, "admin")],
                                threads=config.http_threads,
                                connection_limit=OTHER_CONNECTIONS,
                                # waitress refuses a declared body over the limit from its
                                # headers alone, with the same JSON 413 as the app.
                                max_request_body_size=config.max_body_bytes)
        if config.embedded_redis:
            # First of all: a second mmserver on the same data (a second `make run` in one
            # directory) is told that, not that the first one's ports are taken.
            self._lock_data_dir()
        # Listeners are bound before anything else starts, so that a port in use is refused
        # (exit 2) with nothing to undo. The apps are attached once they exist.
        try:
            self._http.bind()
        except ListenError as error:
            raise StartupRefused(self._listen_refusal(error)) from None
        redis_url = config.redis_url or self._start_embedded_redis()
        self._prepare_admin_token()
        self._telemetry.start()

        try:
            # One connection per HTTP worker and scheduler thread at most; redis-py's default
            # cap (100) would refuse bursts with MaxConnectionsError beyond ~100 threads.
            store_client = connect(redis_url, max_connections=config.http_threads + 16)
        except RedisURLError as error:  # options only a client can check (unknown, missing files)
            raise StartupRefused(f"{env_name('redis_url')}: {error}") from None
        self._redis_clients.append(store_client)
        # Off (None) until the subscriber connects, emptied whenever it disconnects.
        self._view_cache = (ViewCache(config.view_cache, config.view_cache_max_age_s)
                            if config.view_cache > 0 else None)
        self._store = Store(store_client, config.modes, config.servers, regions=config.regions,
                            events=config.events, view_cache=self._view_cache)
        if self._view_cache is not None:
            self._metrics.watch_view_cache(self._view_cache.status)
        self._waiters = Waiters(max_waiting=config.max_longpolls)
        public_app = create_public_app(store=self._store, waiters=self._waiters,
                                       readiness=self.readiness, config=config,
                                       middleware=[self._metrics.http_middleware()],
                                       counters=self._metrics)
        self._store_status = BoundedRead(self._read_store_status, wait_s=STATUS_READ_WAIT_S, name="status")
        self._store_stats = BoundedRead(self._store.stats, wait_s=STATUS_READ_WAIT_S, name="stats")
        admin_app = create_admin_app(self, token=self._admin_token, metrics=self._metrics.render,
                                     max_body_bytes=config.max_body_bytes,
                                     # Probes point here: this listener's workers are its own.
                                     routes={"/healthz": Liveness(), "/readyz": ReadinessResource(self.readiness)})
        self._public_slot.app, self._admin_slot.app = public_app, admin_app
        self._http.start()
        self._http_started = True
        public, admin = self._http.addresses
        logger.info("listening: public API on http://%s, control plane on http://%s", public, admin)

        self._subscriber = Subscriber(
            # A connect to a frozen Redis blocks up to socket_timeout, which the shutdown
            # event cannot interrupt: keep it a few health intervals.
            connect=lambda: connect_subscriber(redis_url, health_check_interval=SUBSCRIBER_HEALTH_S,
                                               socket_timeout=3 * SUBSCRIBER_HEALTH_S),
            health_interval_s=SUBSCRIBER_HEALTH_S,
            channels=[EVENTS_CHANNEL, VIEWS_CHANNEL] if self._view_cache is not None else [EVENTS_CHANNEL],
            on_message=self._on_message,
            on_connect=self._on_subscribed,
            on_disconnect=self._view_cache.disconnected if self._view_cache is not None else lambda: None,
            readiness=self.readiness,
            shutdown=self.shutdown,
            backoff=Backoff(config.redis_backoff_initial_ms, config.redis_backoff_max_ms,
                            config.redis_reconnect_attempts),
        )
        self._subscriber.start()
        self._metrics.watch(stats=self._store_stats.fresh, subscriber_status=self._subscriber.status)

        if config.webhooks is not None:
            self._start_webhooks(redis_url, store_client)

        self._ticker = Ticker(self._store, config.modes, shutdown=self.shutdown, regions=config.regions)
        self._scheduler = Scheduler(stall_after_s=max(30.0, 20 * config.tick_interval_ms / 1000),
                                    # Redis away: one line per job; the subscriber decides
                                    # when it has been away too long.
                                    expected_errors=REDIS_AWAY)
        self._scheduler.add_job("matchmaker", self._metrics.timed_tick(self._ticker.tick),
                                config.tick_interval_ms / 1000)
        self._scheduler.add_job("replica-heartbeat", self._record_replica, REPLICA_HEARTBEAT_S)
        # Running before the first heartbeat job records this replica, so that the record
        # never shows a started replica as "starting".
        self.readiness.mark_started()
        with self._lifecycle:
            # An operator may have drained the replica while it started.
            self.state = "draining" if self.readiness.draining else "running"
        self._scheduler.start()
        self.notifier.status("waiting for Redis")

    def _start_webhooks(self, redis_url: str, store_client) -> None:
        webhooks = self.config.webhooks
        # The worker's own client: its XREADGROUP blocks a connection for READ_BLOCK_MS, and
        # it retries with its own backoff, interruptible by the shutdown (no hidden retries).
        worker_client = connect(redis_url, lean=False, max_connections=2, retry=Retry(NoBackoff(), 0))
        self._redis_clients.append(worker_client)
        self._webhooks = DeliveryWorker(
            Deliveries(worker_client, consumer=self.replica_id, max_dead_letters=webhooks.max_dead_letters),
            Sender(webhooks.url, webhooks.timeout_s, user_agent=f"mmserver/{__version__} webhooks"),
            secret=webhooks.secret,
            policy=RetryPolicy(webhooks.max_attempts, webhooks.backoff_initial_s, webhooks.backoff_max_s,
                               webhooks.timeout_s),
            wants=webhooks.wants, shutdown=self.shutdown, recorder=self._metrics,
            backoff=Backoff(self.config.redis_backoff_initial_ms, self.config.redis_backoff_max_ms,
                            self.config.redis_reconnect_attempts))
        self._dead_letters = Deliveries(store_client, consumer=self.replica_id,
                                        max_dead_letters=webhooks.max_dead_letters)
        self._metrics.watch_webhooks(
            BoundedRead(self._dead_letters.stats, wait_s=STATUS_READ_WAIT_S, name="webhooks").fresh)
        self._webhooks.start()
        logger.info("webhooks: delivering events to %s", _url_for_log(webhooks.url))

    def _listen_refusal(self, error: ListenError) -> str:
        """`cannot listen on 127.0.0.1:8080 (MMSERVER_LISTEN, public API): Address already in
        use`: which listener, where, and why, so the operator knows which setting to change."""
        setting, role = LISTENERS[error.index]
        return f"cannot listen on {error.address} ({env_name(setting)}, {role}): {error.strerror}"

    def _serve(self) -> None:
        """The main thread's loop: signals, worker health, systemd readiness and watchdog."""
        next_watchdog = 0.0
        while not self.shutdown.is_set():
            try:
                item = self._signals.get(timeout=0.25)
            except queue.Empty:
                item = None
            if item is not None:
                name = signal.Signals(item).name
                logger.info("received %s: stopping", name)
                self.shutdown.request(f"{name} received", EXIT_OK)
                break
            self._check_workers()
            if not self._ready_sent and self.readiness.redis_connected:
                self._ready_sent = True
                logger.info("ready: replica %s, Redis answers", self.replica_id)
                self.notifier.ready(status=f"ready: replica {self.replica_id}")
            interval = self.notifier.watchdog_interval_s
            if interval and time.monotonic() >= next_watchdog and self._workers_alive():
                self.notifier.watchdog()
                next_watchdog = time.monotonic() + interval

    def _workers_alive(self) -> bool:
        return bool(self._http and self._http.is_alive() and self._scheduler and self._scheduler.is_alive())

    def _check_workers(self) -> None:
        if self._http and not self._http.is_alive():
            self.shutdown.request("HTTP server loop died", EXIT_RESTART)
        elif self._scheduler and self._scheduler.stalled_jobs():
            self.shutdown.request(f"scheduler stalled: {', '.join(self._scheduler.stalled_jobs())}",
                                  EXIT_RESTART)
        elif self._subscriber and not self._subscriber.status()["alive"] and not self.shutdown.is_set():
            self.shutdown.request("subscriber thread ended", EXIT_RESTART)
        elif self._webhooks and not self._webhooks.status()["alive"] and not self.shutdown.is_set():
            self.shutdown.request("webhook delivery thread ended", EXIT_RESTART)

    # --- stop ---

    def _stop(self) -> int:
        request = self.shutdown.stop_request
        assert request is not None
        status, reason = request.exit_status, request.reason
        config = self.config
        with self._lifecycle:
            self.state = "stopping"
            self.readiness.mark_stopping()
        self.notifier.stopping(status=f"stopping: {reason}")
        # A stop the supervisor asked for (status 0) is routine: INFO, like the last line, so
        # that alerts on WARNING and above only see the stops that need a look.
        logger.log(logging.INFO if status == EXIT_OK else logging.WARNING,
                   "stopping with exit status %d: %s", status, reason)
        if self._waiters:
            self._waiters.close()  # long-polls answer now with the ticket's current state
        deadline = time.monotonic() + config.drain_delay_s + config.shutdown_timeout_s
        self._start_exit_watchdog(deadline + WATCHDOG_GRACE_S, status)
        self._start_force_exit_listener()
        if config.drain_delay_s and self._http_started:
            # Readiness answers 503 meanwhile, so load balancers take this replica out
            # before its listeners close.
            time.sleep(config.drain_delay_s)
        steps = StopSequence(deadline, expected_errors=REDIS_AWAY)
        if self._http_started:
            # Requests in flight may use the deadline but for a reserve, so that a drain cut
            # at its deadline still leaves the later steps (scheduler, subscriber, replica
            # record, Sentry) their turn.
            reserve = min(HTTP_DRAIN_RESERVE_S, config.shutdown_timeout_s / 4)
            steps.run("http", lambda: self._drain_http(deadline - reserve))
        if self._scheduler:
            steps.run("scheduler", lambda: self._scheduler.stop(steps.remaining()))
        if self._subscriber:
            steps.run("subscriber", lambda: self._subscriber.join(steps.remaining()))
        if self._webhooks:
            # An attempt in flight may take up to the request timeout; past the deadline it is
            # abandoned (still pending: another replica, or the next start, delivers it).
            steps.run("webhooks", lambda: self._webhooks.join(steps.remaining()))
        if self._store:
            steps.run("replica-record", lambda: self._store.remove_replica(self.replica_id))
        for client in self._redis_clients:
            client.close()
        if status != EXIT_OK:
            steps.run("sentry-event", lambda: self._telemetry.report_exit(reason, status))
        if self._telemetry.enabled:
            steps.run("sentry-flush", lambda: self._flush_sentry(max(0.5, steps.remaining())), min_time_s=1.0)
        self._stop_embedded_redis(max(1.0, steps.remaining()))
        logger.log(logging.ERROR if status == EXIT_RESTART else logging.INFO,
                   "exit status %d: %s", status, reason)
        self._close_logs()
        return status

    def _flush_sentry(self, timeout: float) -> None:
        # Half a second at least even past the deadline: the exit event is why we stopped
        # gracefully, and the exit watchdog still bounds the whole sequence.
        if not self._telemetry.flush(timeout):
            logger.warning("Sentry did not receive every event before the deadline")

    def _drain_http(self, deadline: float) -> None:
        self._http.stop_accepting()
        if not self._http.drain(deadline):
            logger.warning("HTTP drain cut requests still in flight at the deadline")

    def _stop_embedded_redis(self, timeout: float) -> None:
        if self._embedded is not None:
            # The very last step: every other component is done with Redis. stop() logs
            # what went wrong, if anything (an ERROR when data may be lost).
            self._embedded.stop(timeout)
            self._embedded = None

    def _close_logs(self) -> None:
        if self._logs:
            closer = threading.Thread(target=self._logs.stop, name="log-drain", daemon=True)
            closer.start()
            closer.join(5.0)

    def _start_exit_watchdog(self, at: float, status: int) -> None:
        def watchdog() -> None:
            time.sleep(max(0.0, at - time.monotonic()))
            self._hard_exit(status, f"mmserver: stop sequence overran its deadline; exiting with status {status}")

        threading.Thread(target=watchdog, name="exit-watchdog", daemon=True).start()

    def _hard_exit(self, status: int, line: str) -> None:
        """Exit now, after at most half a second for the log queue (which says why)."""
        _last_words(line)
        if self._logs:
            flusher = threading.Thread(target=self._logs.stop, name="log-drain", daemon=True)
            flusher.start()
            flusher.join(0.5)
        os._exit(status)

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

    # --- start-up helpers ---

    def _install_signal_handlers(self) -> None:
        def handler(signum: int, frame: object) -> None:
            self._signals.put_nowait(signum)  # SimpleQueue.put is reentrant-safe: no lock here

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, handler)

        def thread_died(args: threading.ExceptHookArgs) -> None:
            name = args.thread.name if args.thread else "?"
            logger.error("thread %s died", name,
                         exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
            self.shutdown.request(f"thread {name} died: {args.exc_type.__name__}", EXIT_RESTART)

        threading.excepthook = thread_died

    def _lock_data_dir(self) -> None:
        setting = env_name("data_dir")
        embedded = EmbeddedRedis(self.config.data_dir)
        try:
            embedded.lock()
        except DataDirInUse as error:
            holder = f"pid {error.holder}" if error.holder is not None else "pid unknown"
            raise StartupRefused(
                f"data directory {error.data_dir} ({setting}) is in use by another mmserver "
                f"({holder}): stop that one, or give this one another {setting}") from None
        except OSError as error:
            raise StartupRefused(
                f"{setting}: cannot use {embedded.data_dir}: {error.strerror or error}") from None
        self._embedded = embedded

    def _start_embedded_redis(self) -> str:
        assert self._embedded is not None, "_lock_data_dir() comes first"
        return self._embedded.start(timeout=15.0)

    def _prepare_admin_token(self) -> None:
        if self._admin_token is not None:
            return
        # No token configured and a loopback listener (config.py refuses anything else): use
        # the one of an earlier start, or generate one, where mmadmin on this host finds it.
        path = Path(self.config.data_dir) / admin_token.FILE_NAME
        try:
            prepared = admin_token.prepare(path)
        except OSError as error:
            raise StartupRefused(
                f"{env_name('data_dir')}: cannot write {path}: {error.strerror or error}") from None
        self._admin_token = prepared.token
        if prepared.reused:
            logger.info("reusing the admin token in %s", path)
        elif prepared.why_new == admin_token.NONE_YET:
            logger.info("generated an admin token in %s", path)
        else:
            logger.warning("generated a new admin token in %s: %s", path, prepared.why_new)

    def _count_shutdown(self) -> None:
        # Recorded when asked, not at exit: a scrape can only see it during the drain delay.
        self._metrics.shutdown_requested(_reason_kind(self.shutdown.reason or ""))

    # --- workers' callbacks ---

    def _on_message(self, channel: str, data: str) -> None:
        # The cache first: a long-poll woken here re-reads from Redis, not from a stale entry.
        if self._view_cache is not None:
            self._view_cache.on_message(data)
        if channel == EVENTS_CHANNEL:
            self._waiters.on_event(channel, data)

    def _on_subscribed(self) -> None:
        # Messages published while disconnected are gone: nothing cached before is trusted,
        # and every long-poll re-reads.
        if self._view_cache is not None:
            self._view_cache.connected()
        self._waiters.wake_all()

    def _record_replica(self) -> None:
        self._store.record_replica(self._replica_info(), REPLICA_TTL_S)

    def _replica_info(self) -> dict:
        return {
            "id": self.replica_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "version": __version__,
            "started_at": self.started_at,
            "last_tick": self._scheduler.last_success_wall("matchmaker") if self._scheduler else None,
            "state": self.state,
        }

    # --- the control plane (admin/app.py's Control) ---

    def request_shutdown(self, reason: str) -> dict:
        full_reason = f"admin shutdown: {reason}"
        if not self.shutdown.request(full_reason, EXIT_RESTART):
            logger.info("admin shutdown asked while already stopping: %s", reason)
        return {"state": "stopping", "reason": self.shutdown.reason,
                "exit_status": self.shutdown.exit_status}

    def drain(self) -> dict:
        with self._lifecycle:
            if not self.readiness.draining:
                logger.warning("draining on operator request: new tickets refused, readiness 503")
                self.readiness.mark_draining()
                if self.state == "running":
                    self.state = "draining"
                self.notifier.status("draining: new tickets refused")
            return {"state": self.state, "accepting_tickets": False}

    def undrain(self) -> dict:
        with self._lifecycle:
            if self.shutdown.is_set() or self.readiness.stopping:
                # The stop sequence is not undone: the answer says so and nothing changes.
                logger.warning("undrain refused: the replica is stopping (%s)", self.shutdown.reason)
                return {"state": "stopping", "accepting_tickets": False,
                        "reason": self.shutdown.reason}
            if self.readiness.draining:
                logger.warning("undrained on operator request: new tickets accepted again")
                self.readiness.mark_undrained()
                if self.state == "draining":
                    self.state = "running"
                self.notifier.status(f"ready: replica {self.replica_id}")
            ready, readiness = self.readiness.check()
            # Ready again only if Redis answers; readiness names what is missing otherwise.
            return {"state": self.state, "accepting_tickets": True, "ready": ready,
                    "readiness": readiness}

    def match(self, match_id: str) -> dict:
        return self._store.match(match_id)

    def running_matches(self, limit: int) -> dict:
        return self._store.assigned_matches(limit)

    def finish_match(self, match_id: str) -> dict:
        answer = self._store.finish_match(match_id, reason=OPERATOR_FINISH_REASON)
        logger.warning("match %s finished on operator request", match_id)
        return answer

    def player(self, player_id: str) -> dict:
        return self._store.player(player_id)

    def release_player(self, player_id: str) -> dict:
        answer = self._store.release_player(player_id)
        logger.warning("player %s released on operator request", player_id)
        return answer

    def status(self) -> dict:
        result: dict = {
            "replica": self.replica_id,
            "version": __version__,
            "state": self.state,
            "reason": self.shutdown.reason,
            "uptime_s": round(time.time() - self.started_at, 3),
            "ready": self.readiness.check()[0],
            "readiness": self.readiness.check()[1],
            "workers": {
                "http": {"alive": bool(self._http and self._http.is_alive()),
                         # The public listener only: the status request itself is on the admin one.
                         "in_flight": self._http.in_flight(PUBLIC_LISTENER) if self._http else 0,
                         "long_polls": self._waiters.waiting if self._waiters else 0},
                "scheduler": self._scheduler.status() if self._scheduler else None,
                "subscriber": self._subscriber.status() if self._subscriber else None,
                **({"webhooks": self._webhooks.status()} if self._webhooks else {}),
            },
            # This replica's ticket view cache (store/viewcache.py); None when it is off.
            "view_cache": self._view_cache.status() if self._view_cache is not None else None,
        }
        if self._store_status is not None:
            # Redis away or frozen: the status still answers within STATUS_READ_WAIT_S, with the
            # last stats that arrived (stats_age_s old) and why fresh ones are missing.
            reading = self._store_status.get()
            if reading.value is not None:
                result.update(reading.value)
            if not reading.fresh:
                result["store_error"] = reading.error
                result["stats_age_s"] = reading.age_s
        return result

    def _read_store_status(self) -> dict:
        status = {**self._store.stats(), "replicas": self._store.replicas()}
        if self._dead_letters is not None:
            status["webhooks"] = self._dead_letters.stats()
        return status

    # --- webhook dead letters (admin/resources.py; WebhooksNotConfigured is a 404) ---

    def _webhook_state(self) -> Deliveries:
        if self._dead_letters is None:
            raise WebhooksNotConfigured()
        return self._dead_letters

    def dead_letters(self, after: str | None, limit: int) -> dict:
        return self._webhook_state().dead_letters(after, limit)

    def replay_dead_letters(self, ids: list[str] | None) -> dict:
        answer = self._webhook_state().replay(ids)
        logger.warning("webhooks: %d dead letters replayed on operator request", answer["replayed"])
        return answer

    def discard_dead_letters(self, ids: list[str] | None) -> dict:
        answer = self._webhook_state().discard(ids)
        logger.warning("webhooks: %d dead letters discarded on operator request", answer["discarded"])
        return answer


def _url_for_log(url: str) -> str:
    """Scheme, host and path: a query string may carry a receiver's own token."""
    parsed = urllib.parse.urlsplit(url)
    return f"{parsed.scheme}://{parsed.netloc}{parsed.path}"


def _reason_kind(reason: str) -> str:
    """A bounded label for a free-text stop reason."""
    if reason.endswith(" received"):
        return "signal"
    if reason.startswith("admin shutdown:"):
        return "admin"
    if reason.startswith("redis unreachable"):
        return "redis"
    if reason.startswith("start-up failed"):
        return "startup"
    return "worker"


def _last_words(line: str) -> None:
    """Write straight to stderr: used when the log pipeline itself may be stuck."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except Exception:
        pass
