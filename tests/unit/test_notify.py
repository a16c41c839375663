import logging
import os
import socket
import uuid

import pytest

from mmserver.notify import SystemdNotifier


class Receiver:
    """The systemd end: a bound AF_UNIX datagram socket."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(2)

    def receive(self) -> bytes:
        return self.sock.recv(4096)

    def assert_empty(self) -> None:
        self.sock.setblocking(False)
        try:
            with pytest.raises(BlockingIOError):
                self.sock.recv(4096)
        finally:
            self.sock.settimeout(2)


@pytest.fixture
def socket_path(tmp_path):
    path = str(tmp_path / "notify.sock")
    assert len(path) < 100, "AF_UNIX paths are limited to 108 bytes"
    return path


@pytest.fixture
def receiver(socket_path):
    r = Receiver(socket_path)
    yield r
    r.sock.close()


def test_each_call_sends_exactly_its_datagram(receiver, socket_path):
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": socket_path})
    assert notifier.enabled

    notifier.ready()
    assert receiver.receive() == b"READY=1"
    notifier.ready(status="serving on 127.0.0.1:8080")
    assert receiver.receive() == b"READY=1\nSTATUS=serving on 127.0.0.1:8080"
    notifier.status("draining")
    assert receiver.receive() == b"STATUS=draining"
    notifier.stopping()
    assert receiver.receive() == b"STOPPING=1"
    notifier.stopping(status="stopping: admin shutdown")
    assert receiver.receive() == b"STOPPING=1\nSTATUS=stopping: admin shutdown"
    notifier.extend_timeout(2.5)
    assert receiver.receive() == b"EXTEND_TIMEOUT_USEC=2500000"
    receiver.assert_empty()
    notifier.close()


def test_status_newlines_cannot_inject_assignments(receiver, socket_path):
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": socket_path})
    notifier.status("line one\nREADY=1")
    assert receiver.receive() == b"STATUS=line one READY=1"


def test_watchdog_for_this_process(receiver, socket_path):
    notifier = SystemdNotifier.from_environ(
        {"NOTIFY_SOCKET": socket_path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert notifier.watchdog_interval_s == 15.0
    notifier.watchdog()
    assert receiver.receive() == b"WATCHDOG=1"
    receiver.assert_empty()


def test_watchdog_without_pid_applies_to_us(receiver, socket_path):
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": socket_path, "WATCHDOG_USEC": "1000000"})
    assert notifier.watchdog_interval_s == 0.5


def test_watchdog_pid_of_another_process_disables_the_watchdog(receiver, socket_path):
    other = os.getppid()
    assert other != os.getpid()
    notifier = SystemdNotifier.from_environ(
        {"NOTIFY_SOCKET": socket_path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(other)}
    )
    assert notifier.enabled
    assert notifier.watchdog_interval_s is None
    notifier.watchdog()
    receiver.assert_empty()
    notifier.ready()  # the rest still works
    assert receiver.receive() == b"READY=1"


@pytest.mark.parametrize("usec", ["", "0", "-5", "soon"])
def test_missing_or_bad_watchdog_usec_means_no_watchdog(receiver, socket_path, usec):
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": socket_path, "WATCHDOG_USEC": usec})
    assert notifier.watchdog_interval_s is None
    notifier.watchdog()
    receiver.assert_empty()


def test_abstract_socket():
    name = f"mmserver-test-{uuid.uuid4().hex}"
    r = Receiver("\0" + name)
    try:
        notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        notifier.ready(status="up")
        assert r.receive() == b"READY=1\nSTATUS=up"
        notifier.close()
    finally:
        r.sock.close()


def test_disabled_notifier_sends_nothing(receiver):
    notifier = SystemdNotifier.from_environ({"WATCHDOG_USEC": "30000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    notifier.ready("x")
    notifier.status("x")
    notifier.stopping("x")
    notifier.watchdog()
    notifier.extend_timeout(5)
    receiver.assert_empty()


def test_send_failure_never_raises_and_warns_once(tmp_path, caplog):
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    with caplog.at_level(logging.DEBUG, logger="mmserver.notify"):
        notifier.ready()
        notifier.status("still fine")
        notifier.stopping()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "nobody-listens.sock" in warnings[0].getMessage()
    assert len(caplog.records) == 3  # the later failures are still logged, at debug


def test_resends_after_the_listener_comes_back(tmp_path):
    path = str(tmp_path / "n.sock")
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": path})
    notifier.ready()  # nobody there yet: ignored
    r = Receiver(path)
    try:
        notifier.status("second")
        assert r.receive() == b"STATUS=second"
    finally:
        r.sock.close()
