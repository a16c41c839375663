"""The composition root: every component of one replica, built from the Config and wired here.

Nothing else constructs a component or reads the Config to decide how (the one object built
over the replica from outside is the control plane's, control.py, which the lifecycle hands to
`start()`): each part receives what it needs through its constructor. `start()` builds and starts them in dependency order (Sentry
first, so that a failed start reaches it; then the listeners, so that a port in use is refused
before anything needs undoing; the admin token once Redis's URL is known to be usable); `stop()`
stops them in the order of SPEC.md's stop sequence, each step a named step of the caller's
StopSequence. When to start and stop, and what a signal or a dead worker means, is the
lifecycle's business (lifecycle.py); what an operator may ask is the control plane's
(control.py).
"""
from __future__ import annotations

import logging
import os
import resource
import secrets
import socket
import time
import urllib.parse
from pathlib import Path
from typing import Mapping

import redis

from mmserver import __version__, admin_token
from mmserver.backoff import Backoff
from mmserver.bounded_read import BoundedRead
from mmserver.config import Config, env_name
from mmserver.embedded_redis import DataDirInUse, EmbeddedRedis, EmbeddedRedisError, EmbeddedRedisRefused
from mmserver.failures import REDIS_AWAY
from mmserver.http.app import create_public_app
from mmserver.http.health import Liveness, ReadinessResource
from mmserver.http.server import HttpServer, Listener, ListenError
from mmserver.http.waiters import Waiters
from mmserver.metrics import Metrics
from mmserver.notify import SystemdNotifier
from mmserver.readiness import Readiness
from mmserver.redis_client import connect, connect_subscriber
from mmserver.redis_url import RedisURLError
from mmserver.scheduler import Scheduler
from mmserver.shutdown import Shutdown
from mmserver.stop import StopSequence
from mmserver.store import RedisUnavailable, Store
from mmserver.store.deliveries import Deliveries
from mmserver.store.keys import EVENTS_CHANNEL, VIEWS_CHANNEL
from mmserver.store.viewcache import ViewCache
from mmserver.subscriber import Subscriber
from mmserver.telemetry import Telemetry
from mmserver.ticker import Ticker
from mmserver.webhooks.retry import RetryPolicy
from mmserver.webhooks.sender import Sender
from mmserver.webhooks.worker import DeliveryWorker
from mmserver_admin.app import create_admin_app
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

REPLICA_HEARTBEAT_S = 2.0
REPLICA_TTL_S = 10.0
SUBSCRIBER_HEALTH_S = 1.0
PUBLIC_LISTENER = 0  # index of the public API among the HTTP server's listeners
# The HTTP server's listeners in order: the setting that names each, and what it serves.
LISTENERS = (("listen", "public API"), ("admin_listen", "control plane"))
# The control-plane listener's own worker pool: /admin/* and /metrics never wait behind public
# requests (long-polls, calls stuck on a slow Redis).
ADMIN_THREADS = 4
# Served on every listener by a pool of their own (http/server.py): they answer within a second
# even while a frozen Redis holds every public and every admin worker.
PROBE_PATHS = ("/healthz", "/readyz")
# How long /admin/status and /metrics wait for Redis stats before answering with the last ones
# (and store_error): a frozen Redis would otherwise hold them for the socket timeout (5 s).
STATUS_READ_WAIT_S = 0.5
# waitress's connection limit counts the connections in its socket map, which parked long-polls
# leave (http/server.py): this many connections besides them (every other client, keep-alive or
# not; past it the oldest idle keep-alive connections are closed for new clients).
OTHER_CONNECTIONS = 1000
# Redis's answers that refuse a write (READONLY, OOM, MASTERDOWN, ... and LOADING, which
# redis-py raises as a connection error): the replica is not ready while the heartbeat gets one.
WRITE_REFUSED = (redis.exceptions.ResponseError, redis.exceptions.BusyLoadingError)
# Requests in flight may use the stop deadline but for this reserve, so that a drain cut at its
# deadline still leaves the later steps (scheduler, subscriber, replica record, Sentry) their turn.
HTTP_DRAIN_RESERVE_S = 2.0


class StartupRefused(Exception):
    """Start-up cannot go on because of how the service is configured or deployed: exit 2."""


class StartupFailed(Exception):
    """Start-up cannot go on for a known reason that a new start may cure (the embedded Redis
    did not answer in time, or was killed): exit 1, one line, no traceback."""


class LateBoundApp:
    """A WSGI app slot: the listener is bound before the app behind it is built."""

    def __init__(self) -> None:
        self.app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


class Replica:
    """One replica's components. Built cheaply (nothing connects) by the constructor; `start()`
    builds the rest. Any component may be None when start-up did not reach it."""

    def __init__(self, config: Config, *, environ: Mapping[str, str]) -> None:
        self.config = config
        self.replica_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.started_at = time.time()
        self.shutdown = Shutdown()
        self.readiness = Readiness()
        self.notifier = SystemdNotifier.from_environ(environ)
        self.metrics = Metrics()
        self.telemetry = Telemetry(config.sentry_dsn, release=f"mmserver@{__version__}",
                                   server_name=socket.gethostname())
        self.admin_token: str | None = config.admin_token
        self.http: HttpServer | None = None
        self.http_started = False
        self.embedded: EmbeddedRedis | None = None
        self.store: Store | None = None
        self.view_cache: ViewCache | None = None  # None: off, or not started
        self.waiters: Waiters | None = None
        self.subscriber: Subscriber | None = None
        self.ticker: Ticker | None = None
        self.scheduler: Scheduler | None = None
        self.webhooks: DeliveryWorker | None = None  # None: no [webhooks] configured
        self.dead_letters: Deliveries | None = None  # the control plane's view of the same state
        self.store_status: BoundedRead[dict] | None = None
        self._redis_clients: list = []

    # --- start ---

    def start(self, control) -> None:
        """Build and start everything, in dependency order. `control` is the object the
        control plane's routes call (control.py); raises StartupRefused for exit 2."""
        config = self.config
        # First: a start-up that fails from here on (exit 1) reaches Sentry. Its "enabled" line
        # waits until nothing can be refused any more (a refusal is one line).
        self.telemetry.start()
        _raise_open_file_limit(config.max_longpolls + OTHER_CONNECTIONS)
        public_slot, admin_slot = LateBoundApp(), LateBoundApp()
        self.http = HttpServer([Listener(config.listen, public_slot),
                                Listener(config.admin_listen, admin_slot, ADMIN_THREADS, "admin")],
                               threads=config.http_threads,
                               probe_paths=PROBE_PATHS,
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
            self.http.bind()
        except ListenError as error:
            raise StartupRefused(_listen_refusal(error)) from None
        redis_url = config.redis_url or self._start_embedded_redis()
        try:
            # One connection per HTTP worker and scheduler thread at most; redis-py's default
            # cap (100) would refuse bursts with MaxConnectionsError beyond ~100 threads.
            store_client = connect(redis_url, max_connections=config.http_threads + 16)
        except RedisURLError as error:  # options only a client can check (unknown, missing files)
            raise StartupRefused(f"{env_name('redis_url')}: {error}") from None
        self._redis_clients.append(store_client)
        # Only once the URL is known to be usable: a refused start writes no token and logs
        # nothing but the refusal.
        self._prepare_admin_token()
        self.telemetry.announce()
        # Off (None) until the subscriber connects, emptied whenever it disconnects.
        self.view_cache = (ViewCache(config.view_cache, config.view_cache_max_age_s)
                           if config.view_cache > 0 else None)
        self.store = Store(store_client, config.modes, config.servers, regions=config.regions,
                           events=config.events, view_cache=self.view_cache)
        if self.view_cache is not None:
            self.metrics.watch_view_cache(self.view_cache.status)
        self.waiters = Waiters(max_waiting=config.max_longpolls)
        public_slot.app = create_public_app(store=self.store, waiters=self.waiters,
                                            readiness=self.readiness, config=config,
                                            middleware=[self.metrics.http_middleware()],
                                            counters=self.metrics)
        self.store_status = BoundedRead(self._read_store_status, wait_s=STATUS_READ_WAIT_S, name="status")
        store_stats = BoundedRead(self.store.stats, wait_s=STATUS_READ_WAIT_S, name="stats")
        admin_slot.app = create_admin_app(
            control, token=self.admin_token, metrics=self.metrics.render,
            max_body_bytes=config.max_body_bytes,
            # Probes point here: this listener's workers are its own.
            routes={"/healthz": Liveness(), "/readyz": ReadinessResource(self.readiness)})
        self.http.start()
        self.http_started = True
        public, admin = self.http.addresses
        logger.info("listening: public API on http://%s, control plane on http://%s", public, admin)

        self.subscriber = Subscriber(
            # A connect to a frozen Redis blocks up to socket_timeout, which the shutdown
            # event cannot interrupt: keep it a few health intervals.
            connect=lambda: connect_subscriber(redis_url, health_check_interval=SUBSCRIBER_HEALTH_S,
                                               socket_timeout=3 * SUBSCRIBER_HEALTH_S),
            health_interval_s=SUBSCRIBER_HEALTH_S,
            channels=[EVENTS_CHANNEL, VIEWS_CHANNEL] if self.view_cache is not None else [EVENTS_CHANNEL],
            on_message=self._on_message,
            on_connect=self._on_subscribed,
            on_disconnect=self.view_cache.disconnected if self.view_cache is not None else lambda: None,
            readiness=self.readiness,
            shutdown=self.shutdown,
            backoff=Backoff(config.redis_backoff_initial_ms, config.redis_backoff_max_ms,
                            config.redis_reconnect_attempts),
        )
        self.subscriber.start()
        self.metrics.watch(stats=store_stats.fresh, subscriber_status=self.subscriber.status)

        if config.webhooks is not None:
            self._start_webhooks(redis_url, store_client)

        self.ticker = Ticker(self.store, config.modes, shutdown=self.shutdown, regions=config.regions)
        self.scheduler = Scheduler(stall_after_s=max(30.0, 20 * config.tick_interval_ms / 1000),
                                   # Redis away: one line per job; the subscriber decides
                                   # when it has been away too long.
                                   expected_errors=REDIS_AWAY)
        self.scheduler.add_job("matchmaker", self.metrics.timed_tick(self.ticker.tick),
                               config.tick_interval_ms / 1000)
        self.scheduler.add_job("replica-heartbeat", self._record_replica, REPLICA_HEARTBEAT_S)
        # Before the first heartbeat job records this replica, so that the record never shows
        # a started replica as "starting".
        self.readiness.mark_started()
        self.scheduler.start()

    def _start_webhooks(self, redis_url: str, store_client) -> None:
        webhooks, config = self.config.webhooks, self.config
        # The worker's own client: its XREADGROUP blocks a connection for READ_BLOCK_MS, and
        # it retries with its own backoff, interruptible by the shutdown (no hidden retries).
        worker_client = connect(redis_url, lean=False, max_connections=2, retry=Retry(NoBackoff(), 0))
        self._redis_clients.append(worker_client)
        self.webhooks = DeliveryWorker(
            Deliveries(worker_client, consumer=self.replica_id, max_dead_letters=webhooks.max_dead_letters),
            Sender(webhooks.url, webhooks.timeout_s, user_agent=f"mmserver/{__version__} webhooks"),
            secret=webhooks.secret,
            policy=RetryPolicy(webhooks.max_attempts, webhooks.backoff_initial_s, webhooks.backoff_max_s,
                               webhooks.timeout_s),
            wants=webhooks.wants, shutdown=self.shutdown, recorder=self.metrics,
            backoff=Backoff(config.redis_backoff_initial_ms, config.redis_backoff_max_ms,
                            config.redis_reconnect_attempts))
        self.dead_letters = Deliveries(store_client, consumer=self.replica_id,
                                       max_dead_letters=webhooks.max_dead_letters)
        self.metrics.watch_webhooks(
            BoundedRead(self.dead_letters.stats, wait_s=STATUS_READ_WAIT_S, name="webhooks").fresh)
        self.webhooks.start()
        logger.info("webhooks: delivering events to %s", _url_for_log(webhooks.url))

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
        self.embedded = embedded

    def _start_embedded_redis(self) -> str:
        """Start the embedded Redis and return its URL. What an operator must fix (another
        server on its socket, setpriv refused, redis-server refusing its data) is a
        StartupRefused (exit 2); what a new start may cure, a StartupFailed (exit 1)."""
        try:
            return self.embedded.start(timeout=15.0)
        except EmbeddedRedisRefused as error:
            raise StartupRefused(f"{env_name('data_dir')}: {error}") from None
        except EmbeddedRedisError as error:
            raise StartupFailed(str(error)) from None
        except OSError as error:
            # A file of the data directory mmserver cannot write (left by another user, a
            # directory where its log goes, a full or read-only disk): the operator's to fix.
            # Anything else (fork refused, no binary) is unexpected: exit 1 with its traceback.
            if error.filename is None or not Path(error.filename).is_relative_to(self.embedded.data_dir):
                raise
            raise StartupRefused(
                f"{env_name('data_dir')}: cannot start the embedded Redis: {error.strerror or error}: "
                f"{error.filename}") from None

    def _prepare_admin_token(self) -> None:
        if self.admin_token is not None:
            return
        # No token configured and a loopback listener (config/settings.py refuses anything else): use
        # the one of an earlier start, or generate one, where mmadmin on this host finds it.
        path = Path(self.config.data_dir) / admin_token.FILE_NAME
        try:
            prepared = admin_token.prepare(path)
        except OSError as error:
            raise StartupRefused(
                f"{env_name('data_dir')}: cannot write {path}: {error.strerror or error}") from None
        self.admin_token = prepared.token
        if prepared.reused:
            logger.info("reusing the admin token in %s", path)
        elif prepared.why_new == admin_token.NONE_YET:
            logger.info("generated an admin token in %s", path)
        else:
            logger.warning("generated a new admin token in %s: %s", path, prepared.why_new)

    # --- health, for the lifecycle's loop ---

    def failed_worker(self) -> str | None:
        """Why a worker can no longer do its job (a stop reason), or None while all can."""
        if self.http and not self.http.is_alive():
            return "HTTP server loop died"
        if self.scheduler and self.scheduler.stalled_jobs():
            return f"scheduler stalled: {', '.join(self.scheduler.stalled_jobs())}"
        if self.shutdown.is_set():  # the threads below end by themselves once asked to stop
            return None
        if self.subscriber and not self.subscriber.status()["alive"]:
            return "subscriber thread ended"
        if self.webhooks and not self.webhooks.status()["alive"]:
            return "webhook delivery thread ended"
        return None

    def serving(self) -> bool:
        """The HTTP loop and the scheduler both run: what systemd's watchdog vouches for."""
        return bool(self.http and self.http.is_alive() and self.scheduler and self.scheduler.is_alive())

    # --- stop ---

    def stop(self, steps: StopSequence) -> None:
        """SPEC.md's stop sequence for the components, each a step of `steps` (in order: HTTP
        drain, scheduler, subscriber, webhooks, this replica's record); then the clients close."""
        if self.http_started:
            reserve = min(HTTP_DRAIN_RESERVE_S, self.config.shutdown_timeout_s / 4)
            steps.run("http", lambda: self._drain_http(steps.deadline - reserve))
        if self.scheduler:
            steps.run("scheduler", lambda: self.scheduler.stop(steps.remaining()))
        if self.subscriber:
            steps.run("subscriber", lambda: self.subscriber.join(steps.remaining()))
        if self.webhooks:
            # An attempt in flight may take up to the request timeout; past the deadline it is
            # abandoned (still pending: another replica, or the next start, delivers it).
            steps.run("webhooks", lambda: self.webhooks.join(steps.remaining()))
        if self.store:
            steps.run("replica-record", lambda: self.store.remove_replica(self.replica_id))
        for client in self._redis_clients:
            client.close()

    def answer_long_polls(self) -> None:
        """The first thing a stop does: every long-poll answers now with its current state."""
        if self.waiters:
            self.waiters.close()

    def _drain_http(self, deadline: float) -> None:
        self.http.stop_accepting()
        if not self.http.drain(deadline):
            logger.warning("HTTP drain cut requests still in flight at the deadline")

    def stop_embedded_redis(self, timeout: float) -> None:
        if self.embedded is not None:
            # The very last step: every other component is done with Redis. stop() logs
            # what went wrong, if anything (an ERROR when data may be lost).
            self.embedded.stop(timeout)
            self.embedded = None

    # --- workers' callbacks ---

    def _on_message(self, channel: str, data: str) -> None:
        # The cache first: a long-poll woken here re-reads from Redis, not from a stale entry.
        if self.view_cache is not None:
            self.view_cache.on_message(data)
        if channel == EVENTS_CHANNEL:
            self.waiters.on_event(channel, data)

    def _on_subscribed(self) -> None:
        # Messages published while disconnected are gone: nothing cached before is trusted,
        # and every long-poll re-reads.
        if self.view_cache is not None:
            self.view_cache.connected()
        self.waiters.wake_all()

    def _record_replica(self) -> None:
        # Also how this replica learns that Redis answers but refuses writes (readiness.py). Only
        # an answer refusing the write counts: a timeout or a connection error (one slow call, a
        # pool exhausted under load) says nothing of the kind, and whether Redis is reachable
        # is the subscriber's to say.
        try:
            self.store.record_replica(self.info(), REPLICA_TTL_S)
        except RedisUnavailable as error:
            if isinstance(error.__cause__, WRITE_REFUSED):
                self.readiness.set_redis_writes(False)
            raise
        self.readiness.set_redis_writes(True)

    def info(self) -> dict:
        """This replica as its record in Redis shows it to every other replica's status."""
        return {
            "id": self.replica_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "version": __version__,
            "started_at": self.started_at,
            "last_tick": self.scheduler.last_success_wall("matchmaker") if self.scheduler else None,
            "state": self.readiness.state,
        }

    def _read_store_status(self) -> dict:
        status = {**self.store.stats(), "replicas": self.store.replicas()}
        if self.dead_letters is not None:
            status["webhooks"] = self.dead_letters.stats()
        return status


def _raise_open_file_limit(connections: int) -> None:
    """Raise the soft limit of open files so that `connections` fit (each parked long-poll is
    one), up to the hard limit; say so if that is not enough."""
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


def _listen_refusal(error: ListenError) -> str:
    """`cannot listen on 127.0.0.1:8080 (MMSERVER_LISTEN, public API): Address already in use`:
    which listener, where, and why, so the operator knows which setting to change."""
    setting, role = LISTENERS[error.index]
    return f"cannot listen on {error.address} ({env_name(setting)}, {role}): {error.strerror}"


def _url_for_log(url: str) -> str:
    """Scheme, host and path: a query string may carry a receiver's own token."""
    parsed = urllib.parse.urlsplit(url)
    return f"{parsed.scheme}://{parsed.netloc}{parsed.path}"
