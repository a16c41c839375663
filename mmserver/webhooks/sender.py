"""One keep-alive HTTP(S) connection to the webhook URL, POSTing one body at a time.

The standard library's http.client is enough here: one worker thread sends one request at a
time on one persistent connection, which is all urllib3's pool would give us (it is installed,
but only as sentry-sdk's dependency; mmserver would not otherwise need it). An attempt as a
whole (connect, send, the answer) is bounded by the configured timeout: each socket operation
has it, and a watchdog shuts the socket down when the attempt outlasts it (a receiver trickling
its answer a byte at a time kept every read within the timeout and the worker for good). So an
attempt never hangs the worker, a retry elsewhere (after timeout + 1 s) never races one still
in flight, and a shutdown waits at most about that long for it.
"""
from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass

# A receiver's answer body is not used: read this much so the connection can be reused, and
# close it instead when the answer is longer (a hostile or broken receiver cannot make us read
# an endless body).
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Outcome:
    status: int | None  # None: no HTTP answer (connection refused, timeout, reset...)
    error: str | None   # why it failed, for the log and the dead letter; None on a 2xx

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Sender:
    def __init__(self, url: str, timeout_s: float, *, user_agent: str = "mmserver-webhooks",
                 ssl_context: ssl.SSLContext | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = parsed.port
        self._target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        self._timeout_s = timeout_s
        self._user_agent = user_agent
        self._ssl_context = ssl_context or (ssl.create_default_context() if self._https else None)
        self._connection: http.client.HTTPConnection | None = None
        self._watchdog = _Watchdog()

    def post(self, body: bytes, headers: dict[str, str]) -> Outcome:
        deadline = time.monotonic() + self._timeout_s
        try:
            outcome = self._attempt(body, headers, deadline)
        finally:
            fired = self._watchdog.disarm()
        if fired:
            # Cut: whatever was parsed (http.client takes the end of a shut-down socket for the
            # end of the headers) is no answer. A 2xx at the very deadline is retried: at least once.
            self.close()
            return Outcome(None, f"timeout (the attempt outlasted {self._timeout_s:g} s)")
        return outcome

    def _attempt(self, body: bytes, headers: dict[str, str], deadline: float) -> Outcome:
        headers = {"User-Agent": self._user_agent, **headers}
        reused = self._connection is not None
        try:
            return self._post(body, headers, deadline)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
            self.close()
            if not reused or time.monotonic() >= deadline:  # no time left for another try
                return Outcome(None, _describe(error))
        except (OSError, http.client.HTTPException) as error:
            self.close()
            return Outcome(None, _describe(error))
        # A kept-alive connection the receiver closed while idle: once more on a fresh one.
        # (The receiver may have acted on the first request before resetting: at least once.)
        try:
            return self._post(body, headers, deadline)
        except (OSError, http.client.HTTPException) as error:
            self.close()
            return Outcome(None, _describe(error))

    def _post(self, body: bytes, headers: dict[str, str], deadline: float) -> Outcome:
        connection = self._connection or self._connect()
        self._watchdog.arm(connection.sock, deadline)
        connection.request("POST", self._target, body=body, headers=headers)
        answer = connection.getresponse()
        answer.read(MAX_ANSWER_BYTES)
        if not answer.isclosed() or answer.will_close:
            self.close()  # answer longer than we read, or the receiver closes: start afresh
        status = answer.status
        return Outcome(status, None if 200 <= status < 300 else f"HTTP {status} {answer.reason}".strip())

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout_s, context=self._ssl_context)
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        connection.connect()
        # Small requests, one at a time: Nagle's delay would add up to 40 ms to each.
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connection = connection
        return connection

    def close(self) -> None:
        # The watchdog may still hold the socket: shutting a closed socket down is a no-op.
        if self._connection is not None:
            try:
                self._connection.close()
            except OSError:
                pass
            self._connection = None



class _Watchdog:
    """Shuts down the armed socket once its deadline passes: a read blocked on it returns at
    once and the attempt fails. One thread per sender, started with its first attempt, waiting
    on a condition the rest of the time (arming costs a lock, not a thread per attempt)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._sock: socket.socket | None = None
        self._deadline = 0.0
        self._fired = False
        self._thread: threading.Thread | None = None

    def arm(self, sock: socket.socket | None, deadline: float) -> None:
        with self._condition:
            self._sock, self._deadline = sock, deadline
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="webhooks-deadline", daemon=True)
                self._thread.start()
            self._condition.notify()

    def disarm(self) -> bool:
        """Stop watching; whether the deadline fired since the last disarm."""
        with self._condition:
            fired, self._fired, self._sock = self._fired, False, None
            return fired

    def _run(self) -> None:
        with self._condition:
            while True:
                if self._sock is None:
                    self._condition.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    self._condition.wait(remaining)
                    continue
                sock, self._sock, self._fired = self._sock, None, True
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # closed meanwhile: nothing left to cut


def _describe(error: BaseException) -> str:
    if isinstance(error, socket.timeout) or isinstance(error, TimeoutError):
        return "timeout"
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if text != type(error).__name__ else text
