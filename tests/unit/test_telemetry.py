import subprocess
import sys
import textwrap
import threading
import time

import pytest
import sentry_sdk
from sentry_sdk.transport import Transport

from mmserver.telemetry import Telemetry
from tests.sentry_sink import SentrySink


@pytest.fixture
def sink():
    with SentrySink() as s:
        yield s


@pytest.fixture
def telemetries():
    """Telemetry objects a test starts; the SDK is closed and reset after the test."""
    made: list[Telemetry] = []

    def make(dsn, **kwargs) -> Telemetry:
        kwargs.setdefault("release", "mmserver@test")
        telemetry = Telemetry(dsn, **kwargs)
        made.append(telemetry)
        return telemetry

    yield make
    for telemetry in made:
        telemetry.close()
    sentry_sdk.get_global_scope().set_client(None)


def is_exit_event(event: dict) -> bool:
    return event.get("tags", {}).get("exit_status") is not None


def test_report_exit_and_flush_deliver_the_event(sink, telemetries):
    telemetry = telemetries(sink.dsn, server_name="replica-a", environment="test")
    assert telemetry.enabled
    telemetry.start()
    telemetry.report_exit("admin shutdown: rolling restart", 1)
    assert telemetry.flush(timeout=5) is True

    (event,) = [e for e in sink.events() if is_exit_event(e)]
    assert "admin shutdown: rolling restart" in event["message"]
    assert event["level"] == "error"
    assert event["tags"]["exit_status"] == "1"
    assert event["tags"]["reason"] == "admin shutdown: rolling restart"
    assert event["release"] == "mmserver@test"
    assert event["server_name"] == "replica-a"
    assert event["environment"] == "test"
    assert "user" not in event or "ip_address" not in event["user"]


def test_flush_waits_for_a_slow_ingest(telemetries):
    with SentrySink(delay_s=1.5) as slow:
        telemetry = telemetries(slow.dsn)
        telemetry.start()
        telemetry.report_exit("redis unreachable", 1)
        started = time.monotonic()
        assert telemetry.flush(timeout=5) is True
        assert time.monotonic() - started >= 1.0  # it really waited for the answer
        assert any("redis unreachable" in e["message"] for e in slow.events())


def test_short_flush_against_a_slow_ingest_says_so(telemetries):
    with SentrySink(delay_s=2.0) as slow:
        telemetry = telemetries(slow.dsn)
        telemetry.start()
        telemetry.report_exit("worker died", 1)
        started = time.monotonic()
        assert telemetry.flush(timeout=0.05) is False
        assert time.monotonic() - started < 1.0
        assert slow.events() == []


def test_flush_reports_an_unreachable_ingest(telemetries):
    with SentrySink() as gone:
        dsn = gone.dsn
    # Nothing listens on that port any more: every send fails at once, so the queue empties
    # although nothing was delivered.
    telemetry = telemetries(dsn)
    telemetry.start()
    telemetry.report_exit("worker died", 1)
    assert telemetry.flush(timeout=5) is False


def test_flush_with_nothing_queued_is_true(sink, telemetries):
    telemetry = telemetries(sink.dsn)
    telemetry.start()
    assert telemetry.flush(timeout=1) is True


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_uncaught_exception_in_a_thread_is_reported(sink, telemetries):
    telemetry = telemetries(sink.dsn)
    telemetry.start()

    def crash() -> None:
        raise RuntimeError("subscriber exploded")

    thread = threading.Thread(target=crash, name="subscriber")
    thread.start()
    thread.join()
    assert telemetry.flush(timeout=5)
    event = sink.wait_for(lambda e: "exception" in e, timeout=2)
    assert event is not None
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "RuntimeError" and exception["value"] == "subscriber exploded"
    # No local variables leave the process.
    assert all("vars" not in frame for frame in exception["stacktrace"]["frames"])


def test_disabled_telemetry_is_a_no_op(telemetries):
    for dsn in (None, ""):
        telemetry = telemetries(dsn)
        assert telemetry.enabled is False
        telemetry.start()
        assert not sentry_sdk.get_client().is_active()
        telemetry.report_exit("admin shutdown", 1)
        assert telemetry.flush(timeout=0.01) is True
        telemetry.close()


class RecordingTransport(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.envelopes = []

    def capture_envelope(self, envelope) -> None:
        self.envelopes.append(envelope)


def test_transport_seam(telemetries):
    transport = RecordingTransport()
    telemetry = telemetries("http://public@127.0.0.1:9/1", transport=transport)
    telemetry.start()
    telemetry.report_exit("second signal", 1)
    assert telemetry.flush(timeout=1) is True
    events = [envelope.get_event() for envelope in transport.envelopes if envelope.get_event()]
    assert [e["tags"]["exit_status"] for e in events] == ["1"]
    assert events[0]["fingerprint"] == ["mmserver-exit", "second signal"]


def test_exit_without_flush_does_not_wait_for_the_ingest():
    """The SDK's atexit hook is disarmed: no 'Press Ctrl-C' wait after the last log line."""
    with SentrySink(delay_s=5.0) as slow:
        script = textwrap.dedent(
            f"""
            import sys, time
            from mmserver.telemetry import Telemetry
            telemetry = Telemetry({slow.dsn!r}, release="t")
            telemetry.start()
            telemetry.report_exit("no flush", 1)
            print(time.monotonic(), flush=True)
            sys.exit(1)
            """
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
        exiting_took = time.monotonic() - float(done.stdout)  # CLOCK_MONOTONIC is system-wide
    assert done.returncode == 1
    assert "Press Ctrl" not in done.stderr
    # With the SDK's default the hook waits up to shutdown_timeout (2 s) for the slow sink.
    assert exiting_took < 1.0, exiting_took


def test_the_sdk_internals_flush_reads_are_where_they_were(sink, telemetries):
    # Telemetry._pending reads sentry-sdk's HttpTransport worker queue; setup.py pins the SDK
    # exactly. An upgrade that moves it must fail here by name, not make flush() say True.
    import importlib.metadata
    import re
    from pathlib import Path

    from sentry_sdk.transport import HttpTransport

    telemetry = telemetries(sink.dsn)
    telemetry.start()
    transport = telemetry._sdk_transport
    assert isinstance(transport, HttpTransport)
    assert isinstance(transport._worker._queue.unfinished_tasks, int)
    assert telemetry._pending() == 0
    setup = (Path(__file__).resolve().parents[2] / "setup.py").read_text()
    pinned = re.search(r'"sentry-sdk==([0-9.]+)"', setup)
    assert pinned is not None, "setup.py must pin sentry-sdk exactly while telemetry reads its internals"
    assert importlib.metadata.version("sentry-sdk") == pinned.group(1)
