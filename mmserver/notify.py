"""systemd's sd_notify protocol: one datagram per notification on $NOTIFY_SOCKET.

The protocol is a few lines (see sd_notify(3)): newline-separated `KEY=value` assignments sent
as one AF_UNIX SOCK_DGRAM datagram to the path in NOTIFY_SOCKET, where a leading '@' names an
abstract socket. Outside systemd (no NOTIFY_SOCKET) every call is a no-op.

Notifications are a courtesy to the supervisor, never a reason to fail: a send that fails is
logged (a warning the first time, debug after) and otherwise ignored.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Mapping

logger = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(
        self,
        address: str | None,
        *,
        watchdog_usec: int | None = None,
    ) -> None:
        """`address`: NOTIFY_SOCKET as systemd sets it; `watchdog_usec`: WATCHDOG_USEC when it
        applies to this process (None: the watchdog is off)."""
        self._address = _socket_address(address) if address else None
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, pid: int | None = None) -> "SystemdNotifier":
        """Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (`pid`: this process, by default)."""
        address = environ.get("NOTIFY_SOCKET") or None
        watchdog_usec = _positive_int(environ.get("WATCHDOG_USEC"))
        watchdog_pid = environ.get("WATCHDOG_PID")
        if watchdog_pid:
            # systemd sets WATCHDOG_PID so that a child which inherited the environment does not
            # think the watchdog is its own: only the named process pings.
            if _positive_int(watchdog_pid) != (os.getpid() if pid is None else pid):
                watchdog_usec = None
        return cls(address, watchdog_usec=watchdog_usec)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1: half the timeout, as sd_watchdog_enabled(3) advises."""
        if not self.enabled or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def ready(self, status: str | None = None) -> None:
        self._send("READY=1", status)

    def status(self, text: str) -> None:
        self._send(None, text)

    def stopping(self, status: str | None = None) -> None:
        self._send("STOPPING=1", status)

    def watchdog(self) -> None:
        """Ping the watchdog; nothing is sent while the watchdog is off for this process."""
        if self.watchdog_interval_s is not None:
            self._send("WATCHDOG=1", None)

    def extend_timeout(self, seconds: float) -> None:
        """Ask for `seconds` more before systemd times out the current start or stop."""
        self._send(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1_000_000))}", None)

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    def _send(self, assignment: str | None, status: str | None) -> None:
        if self._address is None:
            return
        lines = [assignment] if assignment else []
        if status is not None:
            # One assignment per line: a newline inside the text would start a bogus one.
            lines.append("STATUS=" + " ".join(status.splitlines()))
        payload = "\n".join(lines).encode("utf-8")
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    # A receiver that stops reading must not block the main thread (the
                    # stop sequence sends STOPPING=1): a full queue drops the message instead.
                    self._socket.setblocking(False)
                self._socket.sendto(payload, self._address)
            except OSError as error:
                log = logger.debug if self._warned else logger.warning
                self._warned = True
                log("sd_notify to %s failed: %s", self._address_text, error)

    @property
    def _address_text(self) -> str:
        address = self._address or ""
        return "@" + address[1:] if address.startswith("\0") else address


def _socket_address(address: str) -> str:
    # '@' marks a Linux abstract socket, whose real name starts with a NUL byte.
    return "\0" + address[1:] if address.startswith("@") else address


def _positive_int(raw: str | None) -> int | None:
    try:
        value = int(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None
