"""The lifecycle half of the control plane (drain, undrain) on a Replica that is not started:
no Redis and no listeners are needed to drain or undrain a replica, and /readyz's answer comes
from the same Readiness the replica holds."""
from __future__ import annotations

import threading

import pytest

from mmserver.config import Config
from mmserver.readiness import Readiness
from mmserver.control import ControlPlane
from mmserver.replica import Replica
from mmserver.shutdown import EXIT_OK, SIGNAL
from tests.unit.test_notify import Receiver


@pytest.fixture
def notify_path(tmp_path):
    path = str(tmp_path / "notify.sock")
    assert len(path) < 100, "AF_UNIX paths are limited to 108 bytes"
    return path


class Service:
    """A replica as start() leaves it once Redis answered (started, connected, running), with
    the control plane's object in front of it."""

    def __init__(self, environ=None) -> None:
        self.replica = Replica(Config(), environ=environ or {})
        self.replica.readiness.mark_started()
        self.replica.readiness.set_redis_connected(True)
        self.control = ControlPlane(self.replica)
        self.readiness, self.shutdown = self.replica.readiness, self.replica.shutdown
        self.drain, self.undrain, self.status = self.control.drain, self.control.undrain, self.control.status
        self.replica_id = self.replica.replica_id

    @property
    def state(self) -> str:
        return self.readiness.state


def running_service(environ=None) -> Service:
    return Service(environ)


def test_drain_then_undrain_is_running_and_ready_again():
    service = running_service()
    assert service.drain() == {"state": "draining", "accepting_tickets": False}
    assert service.readiness.check() == (False, "draining")
    assert service.readiness.draining  # new tickets refused
    answer = service.undrain()
    assert answer == {"state": "running", "accepting_tickets": True, "ready": True,
                      "readiness": "ready"}
    assert service.readiness.check() == (True, "ready")
    assert not service.readiness.draining
    assert service.status()["state"] == "running"


def test_undrain_without_redis_takes_tickets_but_is_not_ready_until_redis_answers():
    service = running_service()
    service.drain()
    service.readiness.set_redis_connected(False)
    answer = service.undrain()
    assert answer["accepting_tickets"] is True and answer["state"] == "running"
    assert (answer["ready"], answer["readiness"]) == (False, "redis unreachable")
    service.readiness.set_redis_connected(True)
    assert service.readiness.check() == (True, "ready")


def test_undrain_of_a_replica_that_was_not_drained_changes_nothing():
    service = running_service()
    assert service.undrain()["state"] == "running"
    assert service.readiness.check() == (True, "ready")


def test_undrain_is_refused_once_a_stop_is_requested(caplog):
    service = running_service()
    service.drain()
    service.shutdown.request("SIGTERM received", EXIT_OK, SIGNAL)
    answer = service.undrain()
    assert answer == {"state": "stopping", "accepting_tickets": False, "reason": "SIGTERM received"}
    assert service.readiness.check() == (False, "draining")
    assert service.readiness.draining
    assert "undrain refused: the replica is stopping (SIGTERM received)" in caplog.text


def test_the_stop_sequence_is_never_undone_by_an_undrain():
    # What the stop does first: a readiness that stops cannot be made ready by an undrain, even
    # one that raced the shutdown request.
    readiness = Readiness()
    readiness.mark_started()
    readiness.set_redis_connected(True)
    readiness.drain()
    readiness.mark_stopping()
    assert readiness.undrain() is None
    assert readiness.check() == (False, "draining") and readiness.state == "stopping"
    assert readiness.draining and readiness.stopping


def test_drain_and_undrain_from_many_threads_end_consistent():
    service = running_service()
    barrier = threading.Barrier(8)

    def flip(index: int) -> None:
        barrier.wait()
        for _ in range(200):
            service.drain() if index % 2 else service.undrain()

    threads = [threading.Thread(target=flip, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    # Whatever won last, the state and the readiness tell the same story.
    assert (service.state == "draining") == service.readiness.draining
    assert service.state in ("running", "draining")


def test_drain_and_undrain_tell_systemd(notify_path):
    receiver = Receiver(notify_path)
    try:
        service = running_service({"NOTIFY_SOCKET": notify_path})
        service.drain()
        assert receiver.receive() == b"STATUS=draining: new tickets refused"
        service.undrain()
        assert receiver.receive() == f"STATUS=ready: replica {service.replica_id}".encode()
        service.undrain()  # nothing to undo: nothing sent
        receiver.assert_empty()
    finally:
        receiver.sock.close()
