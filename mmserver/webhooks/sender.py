"""One keep-alive HTTP(S) connection to the webhook URL, POSTing one body at a time.

The standard library's http.client is enough here: one worker thread sends one request at a
time on one persistent connection, which is all urllib3's pool would give us (it is installed,
but only as sentry-sdk's dependency; mmserver would not otherwise need it). Every socket
operation (connect, send, each read) has the configured timeout, so an attempt never hangs the
worker, and a shutdown waits at most about that long for it.
"""
from __future__ import annotations

import http.client
import socket
import ssl
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

    def post(self, body: bytes, headers: dict[str, str]) -> Outcome:
        headers = {"User-Agent": self._user_agent, **headers}
        reused = self._connection is not None
        try:
            return self._post(body, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
            self.close()
            if not reused:
                return Outcome(None, _describe(error))
        except (OSError, http.client.HTTPException) as error:
            self.close()
            return Outcome(None, _describe(error))
        # A kept-alive connection the receiver closed while idle: once more on a fresh one.
        # (The receiver may have acted on the first request before resetting: at least once.)
        try:
            return self._post(body, headers)
        except (OSError, http.client.HTTPException) as error:
            self.close()
            return Outcome(None, _describe(error))

    def _post(self, body: bytes, headers: dict[str, str]) -> Outcome:
        connection = self._connection or self._connect()
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
        if self._connection is not None:
            try:
                self._connection.close()
            except OSError:
                pass
            self._connection = None


def _describe(error: BaseException) -> str:
    if isinstance(error, socket.timeout) or isinstance(error, TimeoutError):
        return "timeout"
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if text != type(error).__name__ else text
