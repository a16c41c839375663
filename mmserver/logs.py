"""The logging pipeline: every thread logs into a queue, one listener thread writes the lines.

Logging calls never block on the output stream (a slow terminal or a full journald pipe would
otherwise stall request threads and ticks while they hold locks). The cost is that records sit
in a queue until the listener writes them, so `LogPipeline.stop()` must run before the process
exits: it drains the queue and joins the listener (records still queued are lost on `sys.exit`
and `os._exit`).

The queue is bounded (`QUEUE_SIZE` records, enough for a burst): if the output stream blocks
for good (a stopped reader of the pipe), an unbounded queue would grow until the process runs
out of memory. When it is full, a new record is dropped and counted rather than waited for
(a logging call must not block); `LogPipeline.dropped()` gives the count (the service exports it
as `mmserver_log_records_dropped`), and `stop()` writes one last line with the total.

Formats:
- text: `2026-11-27T19:02:12.345Z INFO mmserver.lifecycle: message key=value`, then the traceback
  on the following lines when there is one;
- json: one object per line with `ts`, `level`, `logger`, `message`, `thread`, every `extra`
  field, and `exc` (the traceback text) when there is one.
"""
from __future__ import annotations

import copy
import json
import logging
import logging.handlers
import queue
import sys
import threading
import time
from typing import Any, TextIO

logger = logging.getLogger(__name__)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", (), None))
) | {"message", "asctime", "taskName"}

# Libraries that log once per request or per job run at INFO: at INFO their lines would drown
# ours, so they only speak from WARNING unless the operator asked for DEBUG.
#  - waitress: "Client disconnected while serving ..." for every aborted request (and the
#    "Serving on" banner, which mmserver's own HTTP module replaces);
#  - apscheduler executors: "Running job ..." and "Job ... executed successfully" every tick.
#  - apscheduler scheduler: "Adding job tentatively", "Added job" at every start.
_NOISY_LOGGERS = ("waitress", "apscheduler.executors", "apscheduler.scheduler")

# Records the queue holds before new ones are dropped: a burst (a storm of warnings while Redis
# is away, a traceback per request) fits; at a few hundred bytes to a few KB a record, a few
# tens of MB at most.
QUEUE_SIZE = 10_000


def _timestamp(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _RECORD_FIELDS}


def _traceback_text(record: logging.LogRecord) -> str | None:
    parts = [part for part in (record.exc_text, record.stack_info) if part]
    return "\n".join(parts) if parts else None


# One record, one line: characters of a message that are not printable (a path or value a
# client sent, quoted in a warning) are written as escapes, so that no input can forge a log
# line of its own, send a terminal escape sequence to whoever reads the log, or make a line read
# otherwise than it is. Tracebacks keep their lines.
_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROL_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t",
                         0x2028: "\\u2028", 0x2029: "\\u2029"})  # line and paragraph separators


def _one_line(text: str) -> str:
    """`text` with every character that is not printable escaped (\\n, \\x1b, \\u202e, ...):
    controls, and the format characters (bidirectional overrides, zero-width) that make a line
    read otherwise than it is. Spaces stay."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    escaped = _CONTROL_ESCAPES.get(ord(ch))
    if escaped is not None:
        return escaped
    code = ord(ch)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record.created)} {record.levelname} {record.name}: {_one_line(record.getMessage())}"
        for key, value in _extras(record).items():
            line += f" {key}={_text_value(value)}"
        trace = _traceback_text(record)
        return f"{line}\n{trace}" if trace else line


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    # Quote only when needed, so `key=value` pairs stay splittable on spaces; JSON's quoting
    # escapes control characters too.
    if not text or not text.isprintable() or any(ch.isspace() or ch in "\"=" for ch in text):
        return _one_line(json.dumps(text, ensure_ascii=False))  # JSON leaves U+2028 as it is
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = _extras(record)
        # The fixed fields win over an `extra` of the same name, so every line has the same shape.
        document.update(
            ts=_timestamp(record.created),
            level=record.levelname,
            logger=record.name,
            message=record.getMessage(),
            thread=record.threadName,
        )
        trace = _traceback_text(record)
        if trace:
            document["exc"] = trace
        return json.dumps(document, ensure_ascii=False, default=str)


class _PreparingQueueHandler(logging.handlers.QueueHandler):
    """Freezes a record in the logging thread before it crosses to the listener.

    The stock `prepare()` formats the whole record into `msg` (traceback included), which would
    fold the traceback into the JSON `message`. Here the message is merged with its arguments and
    the traceback rendered to text (the arguments and the frames may change or die once the
    calling thread moves on), while extras stay separate fields for the formatter.
    """

    def __init__(self, q: queue.Queue) -> None:
        super().__init__(q)
        self._traceback_formatter = logging.Formatter()
        self._dropped_lock = threading.Lock()
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            # The writer is stuck or far behind: dropping the newest record keeps the caller
            # from blocking and memory bounded. QueueHandler would report it through
            # handleError, a traceback on stderr per record, into the very stream that is stuck.
            with self._dropped_lock:
                self.dropped += 1

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        prepared = copy.copy(record)  # other handlers may still see the original
        prepared.msg = record.getMessage()
        prepared.args = None
        if record.exc_info:
            prepared.exc_text = record.exc_text or self._traceback_formatter.formatException(record.exc_info)
        prepared.exc_info = None
        return prepared


class _NamedQueueListener(logging.handlers.QueueListener):
    """QueueListener whose thread carries a name (the stock one is an anonymous Thread-N)."""

    def start(self) -> None:
        self._thread = thread = threading.Thread(target=self._monitor, name="log-writer", daemon=True)
        thread.start()

    def enqueue_sentinel(self) -> None:
        # The stock put_nowait would raise queue.Full on a full queue: wait for room instead
        # (stop() is bounded by its caller, see lifecycle.py).
        self.queue.put(self._sentinel)


class LogPipeline:
    def __init__(
        self,
        *,
        root: logging.Logger,
        queue_: queue.Queue,
        queue_handler: _PreparingQueueHandler,
        output: logging.Handler,
        listener: _NamedQueueListener,
        saved_handlers: list[logging.Handler],
        saved_level: int,
        saved_noisy_levels: dict[str, int],
    ) -> None:
        self._root = root
        self._queue = queue_
        self._queue_handler = queue_handler
        self._output = output
        self._listener = listener
        self._saved_handlers = saved_handlers
        self._saved_level = saved_level
        self._saved_noisy_levels = saved_noisy_levels
        self._lock = threading.Lock()
        self._stopped = False

    @classmethod
    def start(cls, *, fmt: str, level: str, stream: TextIO | None = None,
              queue_size: int = QUEUE_SIZE) -> "LogPipeline":
        """Route every record of the process through a queue of at most `queue_size` records to
        `stream` (default: stderr)."""
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        if fmt not in ("text", "json"):
            raise ValueError(f"unknown log format {fmt!r}")
        numeric_level = logging.getLevelName(level.upper())
        if not isinstance(numeric_level, int):
            raise ValueError(f"unknown log level {level!r}")
        output = logging.StreamHandler(sys.stderr if stream is None else stream)
        output.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
        # Bounded: see the module docstring (full means drop and count, never block).
        records: queue.Queue = queue.Queue(maxsize=queue_size)
        queue_handler = _PreparingQueueHandler(records)
        listener = _NamedQueueListener(records, output, respect_handler_level=False)

        root = logging.getLogger()
        saved_handlers, saved_level = list(root.handlers), root.level
        saved_noisy_levels: dict[str, int] = {}
        if numeric_level >= logging.INFO:
            for name in _NOISY_LOGGERS:
                noisy = logging.getLogger(name)
                saved_noisy_levels[name] = noisy.level
                noisy.setLevel(max(logging.WARNING, numeric_level))

        listener.start()
        root.handlers = [queue_handler]
        root.setLevel(numeric_level)
        return cls(
            root=root,
            queue_=records,
            queue_handler=queue_handler,
            output=output,
            listener=listener,
            saved_handlers=saved_handlers,
            saved_level=saved_level,
            saved_noisy_levels=saved_noisy_levels,
        )

    def stop(self) -> None:
        """Write every queued record, stop the listener and give the root logger back. Idempotent."""
        with self._lock:
            if self._stopped:
                return  # QueueListener.stop() twice fails on 3.11 (its thread is None)
            self._stopped = True
            # Detach first so new records go to the previous handlers instead of a queue that
            # nobody reads any more.
            self._root.handlers = self._saved_handlers
            self._root.setLevel(self._saved_level)
            for name, saved in self._saved_noisy_levels.items():
                logging.getLogger(name).setLevel(saved)
            self._listener.stop()  # drains up to its sentinel, then joins
            # A thread that fetched the root's handler list just before the swap can enqueue
            # after the sentinel: write those stragglers here rather than lose them.
            while True:
                try:
                    record = self._queue.get_nowait()
                except queue.Empty:
                    break
                if record is not None:  # None is QueueListener's stop sentinel
                    self._output.handle(record)
            dropped = self.dropped()
            if dropped:
                # Straight to the output: the queue is detached, and this is the last line.
                self._output.handle(logging.LogRecord(
                    __name__, logging.WARNING, __file__, 0,
                    "%d log records were dropped: the log queue was full (output too slow or blocked)",
                    (dropped,), None))
            self._output.flush()

    def write_unfiltered(self, record: logging.LogRecord) -> None:
        """Queue `record` for the output whatever the level set (MMSERVER_LOG_LEVEL=CRITICAL
        filters ERROR) and past the loggers: for the one line that explains an exit, such as a
        refused start. Handed to the queue's handler directly, it also skips what hooks the
        loggers' handling (Sentry's logging integration: a refusal is no event)."""
        self._queue_handler.handle(record)

    def dropped(self) -> int:
        """Records dropped so far because the queue was full (a monotonic count)."""
        return self._queue_handler.dropped

    @property
    def stopped(self) -> bool:
        return self._stopped


class ThrottledWarnings:
    """A logger's warning() at most once per interval, with the count of the lines it held back.

    For warnings that a single cause repeats at the rate of requests (every request while Redis
    is away, every accept at the connection limit): the first says it, the next ones only count.
    It also stands in for waitress's queue and server loggers, hence info(), which goes to
    debug (e.g. waitress's "listening again" after the connection limit).
    """

    def __init__(self, target: logging.Logger, interval: float, prefix: str = "") -> None:
        self._target = target
        self._prefix = prefix
        self._interval = interval
        self._next = 0.0
        self._suppressed = 0

    def warning(self, message: str, *args: Any) -> None:
        # No lock: two threads may both log at an interval's start, which costs one line.
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        self._next = now + self._interval
        suffix = f" ({self._suppressed} similar warnings suppressed)" if self._suppressed else ""
        self._suppressed = 0
        self._target.warning(self._prefix + message + suffix, *args)

    def info(self, message: str, *args: Any) -> None:
        self._target.debug(message, *args)
