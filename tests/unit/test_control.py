"""The lifecycle half of the control plane (drain, undrain) on a Replica that is not started:
no Redis and no listeners are needed to drain or undrain a replica, and /readyz's answer comes
from the same Readiness the replica holds."""
from __future__ import annotations

import threading

import pytest

from mmserver.config import Config
from mmserver.readiness import Readiness
from mmserver.control import ControlPlane
from mmserver.lifecycle import Lifecycle
from mmserver.replica import Replica
from mmserver.shutdown import EXIT_OK, SIGNAL
from tests.unit.test_notify import Receiver


@pytest.fixture
def notify_path(tmp_path):
    path = str(tmp_path / "notify.sock")
    assert len(path) < 100, "AF_UNIX paths are limited to 108 bytes"
    return path


class ControlledReplica:
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


def running_replica(environ=None) -> ControlledReplica:
    return ControlledReplica(environ)


def test_drain_then_undrain_is_running_and_ready_again():
    replica = running_replica()
    assert replica.drain() == {"state": "draining", "accepting_tickets": False}
    assert replica.readiness.check() == (False, "draining")
    assert replica.readiness.draining  # new tickets refused
    answer = replica.undrain()
    assert answer == {"state": "running", "accepting_tickets": True, "ready": True,
                      "readiness": "ready"}
    assert replica.readiness.check() == (True, "ready")
    assert not replica.readiness.draining
    assert replica.status()["state"] == "running"


def test_undrain_without_redis_takes_tickets_but_is_not_ready_until_redis_answers():
    replica = running_replica()
    replica.drain()
    replica.readiness.set_redis_connected(False)
    answer = replica.undrain()
    assert answer["accepting_tickets"] is True and answer["state"] == "running"
    assert (answer["ready"], answer["readiness"]) == (False, "redis unreachable")
    replica.readiness.set_redis_connected(True)
    assert replica.readiness.check() == (True, "ready")


def test_undrain_of_a_replica_that_was_not_drained_changes_nothing():
    replica = running_replica()
    assert replica.undrain()["state"] == "running"
    assert replica.readiness.check() == (True, "ready")


def test_undrain_is_refused_once_a_stop_is_requested(caplog):
    replica = running_replica()
    replica.drain()
    replica.shutdown.request("SIGTERM received", EXIT_OK, SIGNAL)
    answer = replica.undrain()
    assert answer == {"state": "stopping", "accepting_tickets": False, "reason": "SIGTERM received"}
    assert replica.readiness.check() == (False, "draining")
    assert replica.readiness.draining
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
    replica = running_replica()
    barrier = threading.Barrier(8)

    def flip(index: int) -> None:
        barrier.wait()
        for _ in range(200):
            replica.drain() if index % 2 else replica.undrain()

    threads = [threading.Thread(target=flip, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    # Whatever won last, the state and the readiness tell the same story.
    assert (replica.state == "draining") == replica.readiness.draining
    assert replica.state in ("running", "draining")


def test_drain_and_undrain_tell_systemd(notify_path):
    receiver = Receiver(notify_path)
    try:
        replica = running_replica({"NOTIFY_SOCKET": notify_path})
        replica.drain()
        assert receiver.receive() == b"STATUS=draining: new tickets refused"
        replica.undrain()
        assert receiver.receive() == f"STATUS=ready: replica {replica.replica_id}".encode()
        replica.undrain()  # nothing to undo: nothing sent
        receiver.assert_empty()
    finally:
        receiver.sock.close()


def test_the_stop_waits_for_an_undrain_to_finish_telling():
    """An undrain and the stop sequence's first step race: what systemd hears, and what the
    undrain answers, follow the order in which the two changes happened."""
    replica = running_replica()
    replica.drain()
    heard: list[str] = []
    telling, go_on = threading.Event(), threading.Event()

    def status(text: str) -> None:  # the undrain's line to systemd, held until the stop tried
        telling.set()
        go_on.wait(5)
        heard.append(f"STATUS={text}")

    replica.replica.notifier.status = status
    replica.replica.notifier.stopping = lambda status: heard.append(f"STOPPING=1 {status}")
    answers: list[dict] = []
    undrain = threading.Thread(target=lambda: answers.append(replica.undrain()))
    undrain.start()
    assert telling.wait(5)
    stop = threading.Thread(target=Lifecycle(replica.replica).announce_stopping, args=("SIGTERM received",))
    stop.start()
    stop.join(0.3)
    assert stop.is_alive()  # waits until the undrain has told systemd and answered
    go_on.set()
    undrain.join(5)
    stop.join(5)
    assert heard == [f"STATUS=ready: replica {replica.replica_id}", "STOPPING=1 stopping: SIGTERM received"]
    assert answers[0]["state"] == "running"
    assert replica.state == "stopping"
