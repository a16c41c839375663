"""Sentry: start the SDK, report why the process exits, and flush with an honest answer.

Choices, read from sentry-sdk 2.75's own source:
- `flush()` in the SDK returns None whether or not anything was delivered: on a slow ingest a
  short flush simply gives up. Ours reports what happened: True only when the transport's queue
  is empty (every envelope was sent or failed) and no envelope was dropped (network error, error
  status, rate limit, full queue) since the previous flush. Drops are counted through the
  transport's `on_dropped_event` hook; the queue is the background worker's.
- `shutdown_timeout=0`: the SDK's atexit hook would otherwise wait up to 2 more seconds after
  the stop sequence's last log line (printing "Press Ctrl-C to quit") and, against a fast
  ingest, deliver what a missing explicit flush left behind, hiding the bug. The stop sequence
  flushes explicitly within its own deadline (MMSERVER_SHUTDOWN_TIMEOUT_S); exits through no
  stop sequence do not wait for Sentry.
- No PII: `send_default_pii` off (the SDK's default), no local variables in stack frames (request handlers hold
  bearer tokens and player ids in locals), no request bodies.
- Integrations: the defaults (logging, excepthook, atexit, ...) plus Falcon, and threading with
  scope propagation so uncaught exceptions in worker threads are captured. `propagate_scope=True`
  is what `propagate_hub=True` meant; the latter only adds a deprecation warning in our log.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

import sentry_sdk
from sentry_sdk.transport import HttpTransport, Transport

logger = logging.getLogger(__name__)

_TAG_MAX = 200  # Sentry truncates tag values longer than this


class _AccountingHttpTransport(HttpTransport):
    """The SDK's HTTP transport, counting envelopes it had to give up on."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self._drops_lock = threading.Lock()
        self._drops = 0

    def on_dropped_event(self, reason: str) -> None:
        # Called by the SDK for every envelope (or item) it could not deliver: "network",
        # "status_NNN", "status_429", "self_rate_limits", "full_queue".
        with self._drops_lock:
            self._drops += 1
        super().on_dropped_event(reason)

    def take_drops(self) -> int:
        with self._drops_lock:
            drops, self._drops = self._drops, 0
        return drops


class Telemetry:
    def __init__(
        self,
        dsn: str | None,
        *,
        release: str,
        server_name: str | None = None,
        environment: str | None = None,
        transport: Transport | type[Transport] | None = None,  # test seam: replaces the HTTP transport
    ) -> None:
        self._dsn = dsn or None
        self._release = release
        self._server_name = server_name
        self._environment = environment
        self._transport = transport
        self._client: Any = None
        self._sdk_transport: Any = None  # kept: the client forgets its transport on close()

    @property
    def enabled(self) -> bool:
        return self._dsn is not None

    @property
    def started(self) -> bool:
        return self._client is not None

    def start(self) -> None:
        """Initialise the SDK for this process; a no-op without a DSN or when already started."""
        if not self.enabled or self._client is not None:
            return
        # Imported only when enabled: the Falcon integration imports falcon and patches it.
        from sentry_sdk.integrations.falcon import FalconIntegration
        from sentry_sdk.integrations.threading import ThreadingIntegration

        sentry_sdk.init(
            dsn=self._dsn,
            release=self._release,
            server_name=self._server_name,  # None: the SDK uses the host name
            environment=self._environment,
            transport=self._transport or _AccountingHttpTransport,
            integrations=[FalconIntegration(), ThreadingIntegration(propagate_scope=True)],
            default_integrations=True,
            # send_default_pii is left unset, which means off: 2.75 deprecates setting it (in
            # favour of data_collection, absent from older 2.x) and only warns when it is set.
            include_local_variables=False,
            max_request_body_size="never",
            shutdown_timeout=0,  # see the module docstring: our stop sequence flushes explicitly
        )
        self._client = sentry_sdk.get_client()
        transport = self._client.transport
        # SENTRY_PRINT_ENVELOPES=1 makes the SDK wrap its transport in a printer.
        self._sdk_transport = getattr(transport, "_inner", transport)

    def announce(self) -> None:
        """Log that Sentry is on. Separate from `start()`, which runs first thing so that a
        failed start-up reaches Sentry, while a start refused for its configuration prints one
        line: the refusal."""
        if self._client is not None:
            logger.info("Sentry enabled", extra={"release": self._release})

    def report_exit(self, reason: str, exit_status: int) -> None:
        """Send one error event naming why the process exits; a no-op when disabled."""
        if self._client is None:
            return
        with sentry_sdk.new_scope() as scope:
            scope.set_tag("exit_status", str(exit_status))
            scope.set_tag("reason", reason[:_TAG_MAX])
            # One issue per reason, whatever else the message says.
            scope.fingerprint = ["mmserver-exit", reason]
            scope.capture_message(f"mmserver exiting with status {exit_status}: {reason}", level="error")

    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` s for queued events; True if all were delivered (or none queued)."""
        if self._client is None:
            return True
        self._client.flush(timeout=max(0.0, timeout))
        return self._pending() == 0 and self._take_drops() == 0

    def close(self) -> None:
        """Stop the SDK's transport without waiting (call `flush` first). Idempotent."""
        if self._client is None:
            return
        self._client.close(timeout=0)

    def _pending(self) -> int:
        """Envelopes queued or being sent by the SDK's background worker.

        Read from sentry-sdk internals (the HttpTransport's `_worker._queue`, the SDK's own copy of queue.Queue):
        the SDK has no public way to learn whether a flush delivered anything. setup.py pins
        sentry-sdk exactly, and tests/unit/test_telemetry.py fails if an upgrade moves these."""
        if not isinstance(self._sdk_transport, HttpTransport):
            return 0  # the test seam's transport delivers inside capture_envelope
        return self._sdk_transport._worker._queue.unfinished_tasks

    def _take_drops(self) -> int:
        transport = self._sdk_transport
        return transport.take_drops() if isinstance(transport, _AccountingHttpTransport) else 0
