import io
import json
import logging
import re
import threading

import pytest

from mmserver.logs import LogPipeline


@pytest.fixture
def start_pipeline():
    """Start pipelines on a StringIO; whatever a test leaves running is stopped afterwards."""
    started: list[LogPipeline] = []

    def start(fmt: str = "json", level: str = "INFO") -> tuple[LogPipeline, io.StringIO]:
        stream = io.StringIO()
        pipeline = LogPipeline.start(fmt=fmt, level=level, stream=stream)
        started.append(pipeline)
        return pipeline, stream

    yield start
    for pipeline in reversed(started):
        pipeline.stop()


def json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_fields_extras_and_exceptions(start_pipeline):
    pipeline, stream = start_pipeline("json")
    log = logging.getLogger("mmserver.lifecycle")
    log.info("tick %s done", 7, extra={"mode": "duel", "matched": 4})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("tick failed", extra={"mode": "duel"})
    pipeline.stop()

    first, second = json_lines(stream)
    assert first["message"] == "tick 7 done"
    assert first["level"] == "INFO"
    assert first["logger"] == "mmserver.lifecycle"
    assert first["thread"] == threading.current_thread().name
    assert first["mode"] == "duel" and first["matched"] == 4
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert "exc" not in first

    assert second["level"] == "ERROR"
    assert second["message"] == "tick failed"  # the traceback stays out of the message
    assert "Traceback (most recent call last)" in second["exc"]
    assert "RuntimeError: boom" in second["exc"]


def test_json_serialises_values_it_does_not_know(start_pipeline):
    pipeline, stream = start_pipeline("json")
    logging.getLogger("x").warning("odd", extra={"obj": object(), "items": {1, 2}})
    pipeline.stop()
    (line,) = json_lines(stream)
    assert line["obj"].startswith("<object object")
    assert line["message"] == "odd"


def test_text_format(start_pipeline):
    pipeline, stream = start_pipeline("text")
    log = logging.getLogger("mmserver.lifecycle")
    log.info("stopping", extra={"reason": "admin shutdown", "exit_status": 1})
    try:
        1 / 0
    except ZeroDivisionError:
        log.error("failed", exc_info=True)
    pipeline.stop()

    lines = stream.getvalue().splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO mmserver\.lifecycle: stopping "
        r'reason="admin shutdown" exit_status=1',
        lines[0],
    ), lines[0]
    assert re.fullmatch(r"\S+Z ERROR mmserver\.lifecycle: failed", lines[1]), lines[1]
    assert lines[2] == "Traceback (most recent call last):"
    assert lines[-1] == "ZeroDivisionError: division by zero"


def test_level_filters_and_noisy_libraries_are_quiet_at_info(start_pipeline):
    pipeline, stream = start_pipeline("json", "INFO")
    logging.getLogger("mmserver.x").debug("hidden")
    logging.getLogger("apscheduler.executors.default").info('Running job "tick"')
    logging.getLogger("waitress").info("Client disconnected while serving /v1/tickets")
    logging.getLogger("apscheduler.executors.default").warning("maximum number of running instances reached")
    pipeline.stop()
    assert [line["message"] for line in json_lines(stream)] == ["maximum number of running instances reached"]
    # the library loggers get their own levels back
    assert logging.getLogger("waitress").level == logging.NOTSET


def test_debug_lets_library_lines_through(start_pipeline):
    pipeline, stream = start_pipeline("text", "DEBUG")
    logging.getLogger("apscheduler.executors.default").info('Job "tick" executed successfully')
    pipeline.stop()
    assert 'Job "tick" executed successfully' in stream.getvalue()


def test_stop_writes_every_record_from_every_thread(start_pipeline):
    pipeline, stream = start_pipeline("json")
    threads_count, per_thread = 8, 500
    barrier = threading.Barrier(threads_count)

    def work(n: int) -> None:
        barrier.wait()
        log = logging.getLogger(f"worker.{n}")
        for i in range(per_thread):
            log.info("record", extra={"n": n, "i": i})

    threads = [threading.Thread(target=work, args=(n,), name=f"w{n}") for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pipeline.stop()  # no sleep before: stop() itself must drain the queue

    lines = json_lines(stream)
    assert len(lines) == threads_count * per_thread
    assert {(line["n"], line["i"]) for line in lines} == {
        (n, i) for n in range(threads_count) for i in range(per_thread)
    }
    assert {line["thread"] for line in lines} == {f"w{n}" for n in range(threads_count)}


def test_listener_thread_is_named_and_ends_on_stop(start_pipeline):
    pipeline, _ = start_pipeline()
    assert any(t.name == "log-writer" for t in threading.enumerate())
    pipeline.stop()
    assert not any(t.name == "log-writer" for t in threading.enumerate())


def test_stop_twice_is_fine_and_restores_root_handlers(start_pipeline):
    root = logging.getLogger()
    before = list(root.handlers)
    pipeline, stream = start_pipeline("text")
    assert root.handlers != before
    logging.getLogger("a").warning("one")
    pipeline.stop()
    pipeline.stop()
    assert root.handlers == before
    logging.getLogger("a").warning("after stop")  # goes to the old handlers, not our stream
    assert stream.getvalue().count("\n") == 1


def test_rejects_unknown_format_and_level():
    with pytest.raises(ValueError):
        LogPipeline.start(fmt="xml", level="INFO", stream=io.StringIO())
    with pytest.raises(ValueError):
        LogPipeline.start(fmt="text", level="LOUD", stream=io.StringIO())


class _BlockingStream(io.StringIO):
    """An output whose writes block until released: a stopped reader of stderr's pipe."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.released = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        self.released.wait()
        return super().write(text)


def test_a_blocked_output_bounds_the_queue_and_counts_what_is_dropped():
    from mmserver.logs import QUEUE_SIZE
    from mmserver.metrics import Metrics

    stream = _BlockingStream()
    pipeline = LogPipeline.start(fmt="text", level="INFO", stream=stream)
    metrics = Metrics()
    metrics.watch_logs(pipeline.dropped)
    log = logging.getLogger("mmserver.flood")
    try:
        log.info("first")
        assert stream.entered.wait(5)  # the writer now holds "first", blocked in write()
        flood = QUEUE_SIZE * 3
        flooder = threading.Thread(target=lambda: [log.warning("record %d", n) for n in range(flood)])
        flooder.start()
        flooder.join(30)
        assert not flooder.is_alive()  # logging never waited for the stuck writer
        assert pipeline._queue.qsize() == QUEUE_SIZE
        assert pipeline.dropped() == flood - QUEUE_SIZE
        exported = {sample.name: sample.value for family in metrics.registry.collect()
                    for sample in family.samples}
        assert exported["mmserver_log_records_dropped_total"] == flood - QUEUE_SIZE
    finally:
        stream.released.set()
        pipeline.stop()
    lines = stream.getvalue().splitlines()
    # What was queued is written, in order; then one line with the count of the others.
    assert lines[0].endswith("INFO mmserver.flood: first")
    assert lines[1].endswith("record 0") and lines[QUEUE_SIZE].endswith(f"record {QUEUE_SIZE - 1}")
    assert len(lines) == QUEUE_SIZE + 2
    assert re.search(rf"WARNING mmserver\.logs: {flood - QUEUE_SIZE} log records were dropped", lines[-1])


def test_nothing_dropped_means_no_final_line(start_pipeline):
    pipeline, stream = start_pipeline("text")
    logging.getLogger("mmserver.quiet").info("only line")
    pipeline.stop()
    assert pipeline.dropped() == 0
    assert len(stream.getvalue().splitlines()) == 1


def test_a_text_line_cannot_be_forged_or_split_by_what_it_quotes(start_pipeline):
    # A client-chosen path quoted in a warning, carrying a line of its own, a NUL, a terminal
    # escape and a Unicode line separator: one line comes out, every control escaped.
    pipeline, stream = start_pipeline("text")
    forged = ("/admin/x\n2026-12-08T00:41:26.000Z WARNING mmserver.lifecycle: stopping\r\x00\x1b[2J\u2028"
              "\u202egnp.exe\u200b")  # and a right-to-left override, a zero-width space
    logging.getLogger("mmserver_admin.auth").warning("refused (GET %s)", forged, extra={"path": forged})
    pipeline.stop()

    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "refused (GET /admin/x\\n2026-12-08T00:41:26.000Z WARNING mmserver.lifecycle: stopping" \
           "\\r\\x00\\x1b[2J\\u2028\\u202egnp.exe\\u200b)" in lines[0]
    assert all(ch.isprintable() for ch in lines[0])
    assert ' path="/admin/x\\n' in lines[0]


def test_an_unfiltered_record_is_written_whatever_the_level(start_pipeline):
    """A refused start's one line (lifecycle.py) at MMSERVER_LOG_LEVEL=CRITICAL."""
    pipeline, stream = start_pipeline("json", "CRITICAL")
    log = logging.getLogger("mmserver.lifecycle")
    log.error("filtered out, as asked")
    pipeline.write_unfiltered(log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", ("refused",), None))
    pipeline.stop()
    (line,) = json_lines(stream)
    assert (line["level"], line["logger"], line["message"]) == ("ERROR", "mmserver.lifecycle", "refused")
