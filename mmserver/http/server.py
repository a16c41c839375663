"""The HTTP listeners (waitress) and their graceful drain.

Every listener (the public app, the admin app) shares one waitress socket map and one loop
thread ("http-loop"). Worker threads come from task dispatchers: the listeners share one pool
(`threads` workers named waitress-N), except a listener given a `threads` count of its own,
which gets a pool nobody else can fill (workers named waitress-<name>-N). That is how the
control plane keeps answering while long-polls and requests stuck on a slow Redis hold every
public worker. The probes (`probe_paths`: /healthz, /readyz) go further: on every listener they
run on a small pool of their own (waitress-probe-N), chosen per request as it is queued
(`_Server.add_task`), so not even admin calls held by a frozen Redis can make them wait.
Response bytes are written by the loop thread, so the loop keeps running until the last answer
is out.

waitress has no public way to stop a server from code, and its own `close()` methods either
leave the loop running forever (`BaseWSGIServer.close`) or cut requests longer than the
dispatcher's 5 s timeout and close channels from a foreign thread (`MultiSocketServer.close`).
So this module runs the loop itself, one `wasyncore.loop(count=1)` pass at a time, and makes
every change to waitress's objects in the loop thread, between two passes.

Drain sequence:
1. `stop_accepting()`: the loop thread marks every listener not accepting and closes its
   listening socket with `wasyncore.dispatcher.close` (not the server's `close()`, which would
   also close the trigger the drain still needs to wake the loop). New connections are refused.
   The caller waits (bounded) until this is done.
2. `drain(deadline)`: after every loop pass, the loop thread marks each connection that has no
   request in progress (nothing queued, running or half received) `close_when_flushed`, so
   whatever output is pending is written before the socket closes. A connection with a request
   in progress is left alone: marking it would close it before its answer is written. When it
   finishes, its pending output is flushed and the next pass closes it.
3. When no connection is left (or the deadline passed), the loop thread shuts the task
   dispatchers down (waiting at most until the deadline), closes everything left in the socket
   map (the triggers and, after a cut, the connections still busy) and the loop exits because
   its map is empty. `drain()` joins the loop thread and returns True only if nothing was cut.

Connection limit: waitress stops accepting once `connection_limit` sockets are open (the map
is shared, so both listeners stop) and a new client waits in the listen backlog until an idle
connection times out (`channel_timeout`, 120 s). A few thousand idle keep-alive connections
would so lock out every client and the control plane. Instead, like nginx reusing its
keep-alive connections, after every loop pass at the limit with a connection waiting to be
accepted, the loop thread closes the longest-idle connections that hold no request (then, if
none, the slowest half-received requests): a connection with a request queued, running or
being answered is never closed. New clients are so accepted at once whatever the idle crowd.
The limit counts the socket map, which parked long-polls leave (below): it bounds the other
connections, and `max_longpolls` bounds the parked ones.

Parked long-polls: waitress's loop thread owns every socket; a worker thread only runs the app
and appends the answer to the channel's output buffer, which the loop writes. Nothing needs a
thread while a long-poll waits, so none is held (longpoll.py for the app's side):
- every request's WSGI environ carries `PARKING`; a long-poll that must wait stores its state
  in the environ, sets `PARK` = (waiter, timeout) and lets its responder return;
- `_parking_app` (outside Falcon and Sentry's wrapper, so neither sees it) raises `_Parked`
  instead of returning that response; waitress's `Task.service` and `HTTPChannel.service` let a
  BaseException through before the request is popped, and `_Channel.service` catches it once
  the worker no longer touches the request: the request stays first in `channel.requests`,
  so the channel reads nothing more (`readable()` is False), the drain counts it in progress
  and the connection-limit reclaim never closes it;
- only then is the waiter parked, and the loop thread takes the channel out of the socket map
  (`_Channel._unmap`: waitress's loop visits every channel of its map on every pass, so
  thousands of parked channels there would slow every other request). A wake that came
  meanwhile was recorded on the waiter, and `park` refuses: the channel is queued at once;
- `resume`, in the loop thread: put the channel back in the map and in the worker queue
  (`server.add_task`, what waitress itself does for a request it has read);
- the next pass builds a new task around the *same* request and environ (`_Task`), so the app
  sees `resuming` and re-reads; it answers, or parks again;
- a parked request whose connection was closed meanwhile (a reset, a drain cut) is not run
  again by waitress: `_Channel.service` releases its waiter (`longpoll.abandon`);
- a client that goes away while parked (closes or resets its connection) would keep its place
  under the cap until its wait ends, since waitress reads nothing on a channel with a request
  in progress: every `_HANGUP_CHECK_S` the loop thread polls the parked sockets for a hang-up
  alone (POLLRDHUP, POLLHUP, POLLERR; never POLLIN, which a pipelined request would raise).
  A reset or an error (POLLHUP, POLLERR) closes the channel; the client's end of sending alone
  (POLLRDHUP: a close, or a half-close by a client that still reads) ends its wait
  (`longpoll.end_wait`), so it is answered at once with what is current. Either way its waiter
  is woken and its place released.

Everything that touches waitress internals lives in this module; it is written against
waitress 3.0 (setup.py pins `waitress==3.0.*`) and tests/process/test_http_drain.py fails if an
upgrade breaks the drain.
"""
from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask

from mmserver.config import Address
from mmserver.http import longpoll
from mmserver.logs import ThrottledWarnings

logger = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_LOOP_PASS_S = 1.0  # longest poll timeout of one loop pass while serving (waitress's default)
_DRAIN_PASS_S = 0.1  # while draining: re-check idle connections and the deadline this often
_LOOP_ANSWER_S = 5.0  # how long stop_accepting() waits for the loop thread to close listeners
_CUT_GRACE_S = 2.0  # how long drain() waits past its deadline for the loop thread to exit
_QUEUE_WARNING_INTERVAL_S = 10.0
_LIMIT_WARNING_INTERVAL_S = 10.0
# At the connection limit, close this many idle connections beyond the one needed: amortizes
# the scan over the next accepts (nginx reclaims up to 32 keep-alive connections at a time).
_RECLAIM_BATCH = 32
_PROBE_THREADS = 2  # the probes' own pool: their answers read a flag, no Redis, no lock
_HANGUP_CHECK_S = 0.5  # how often parked long-polls are checked for a client gone away
# A peer that closed its side, reset, or failed: what a client going away raises on a socket.
_HANGUP_EVENTS = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR


class ListenError(OSError):
    """One listener could not be bound or listen: which one (`index`, in the order given to
    HttpServer, and `address`) and why (`strerror`, e.g. "Address already in use")."""

    def __init__(self, index: int, address: Address, error: OSError) -> None:
        super().__init__(error.errno, error.strerror or str(error))
        self.index = index
        self.address = address


class Listener(NamedTuple):
    """One listening socket and the app behind it. `threads`: None to use the shared worker
    pool, or the size of a pool of its own (named `name` in its worker threads' names)."""

    address: Address
    app: WSGIApp
    threads: int | None = None
    name: str = ""


class HttpServer:
    def __init__(
        self,
        listeners: Sequence[Listener | tuple[Address, WSGIApp]],
        *,
        threads: int,
        max_request_body_size: int,
        channel_timeout: float = 120.0,
        ident: str = "mmserver",
        connection_limit: int = 1000,
        backlog: int = 1024,
        loop_stall_timeout: float = 5.0,
        probe_paths: Sequence[str] = (),
    ) -> None:
        if not listeners:
            raise ValueError("HttpServer needs at least one listener")
        self._listeners = [Listener(*listener) for listener in listeners]
        for listener in self._listeners:
            if listener.threads is not None and (listener.threads < 1 or not listener.name):
                raise ValueError(f"a listener with a pool of its own needs threads >= 1 and a name: {listener}")
        self._threads = threads
        self._probe_paths = frozenset(probe_paths)
        self._loop_stall_timeout = loop_stall_timeout
        self._adj = Adjustments(
            threads=threads,
            max_request_body_size=max_request_body_size,
            # waitress's converter is int(); keep at least one second
            channel_timeout=max(1, round(channel_timeout)),
            ident=ident,
            # connections beyond this wait in the listen backlog instead of being accepted
            connection_limit=connection_limit,
            backlog=backlog,
            # poll() instead of select(): select() cannot watch descriptors above 1023
            asyncore_use_poll=True,
            # a client that resets its connection is normal traffic, not a logged traceback
            log_socket_errors=False,
            expose_tracebacks=False,
        )
        self._map: dict[int, Any] = {}
        self._servers: list[TcpWSGIServer] = []
        # (dispatcher, thread count): the shared pool first, then each listener's own
        self._pools: list[tuple[ThreadedTaskDispatcher, int]] = []
        self._thread: threading.Thread | None = None
        # `_lock` guards pulling the trigger against the loop thread closing it: a write to a
        # closed pipe descriptor could land in whatever file reuses that number.
        self._lock = threading.Lock()
        self._closed = False
        self._stop_accepting_requested = False
        self._listeners_closed = threading.Event()
        self._drain_deadline: float | None = None
        self._clean = False
        self._limit_log = ThrottledWarnings(logger, _LIMIT_WARNING_INTERVAL_S)
        self._reclaim_log = ThrottledWarnings(logger, _LIMIT_WARNING_INTERVAL_S)
        # monotonic time the loop thread last finished a pass (is_alive)
        self._last_pass = 0.0
        # an idle pass must end well within the stall timeout, or is_alive() would flap
        self._pass_timeout = min(_LOOP_PASS_S, loop_stall_timeout / 4)
        # The parked channels' sockets, by descriptor, watched for a hang-up (loop thread only).
        self._parked: dict[int, _Channel] = {}
        self._hangups = select.poll()
        self._next_hangup_check = 0.0

    # --- lifecycle -------------------------------------------------------------------------

    def bind(self) -> None:
        """Create, bind and listen on every socket now: a busy port raises ListenError here."""
        if self._servers:
            raise RuntimeError("HttpServer.bind() called twice")
        shared = _Dispatcher("", "all HTTP workers busy: ")
        pools = [(shared, self._threads)]
        probes = None
        if self._probe_paths:
            probes = _Dispatcher("probe", "all HTTP probe workers busy: ")
            pools.append((probes, _PROBE_THREADS))
        try:
            for index, (address, app, threads, name) in enumerate(self._listeners):
                dispatcher = shared
                if threads is not None:
                    dispatcher = _Dispatcher(name, f"all HTTP workers busy ({name}): ")
                    pools.append((dispatcher, threads))
                # Built by hand like waitress.server.create_server does, but each server gets
                # its own app while all share one map (and, but for a pool of its own, one
                # dispatcher). Each server also adds its own trigger (a pipe) to the map.
                # _start=True listens right away so that bind() fails on a port another
                # process is listening on.
                try:
                    server = _Server(
                        _parking_app(app),
                        map=self._map,
                        _start=True,
                        dispatcher=dispatcher,
                        adj=self._adj,
                        sockinfo=_sockinfo(address),
                    )
                except OSError as error:  # getaddrinfo, bind or listen
                    raise ListenError(index, address, error) from error
                server.probe_paths, server.probe_dispatcher = self._probe_paths, probes
                server.http_server = self
                # At the limit, waitress logs a warning and an info line each time it stops and
                # starts accepting; with reclaiming that is every few accepts under a flood.
                server.logger = self._limit_log
                self._servers.append(server)
        except BaseException:
            # a half-built server left its socket and trigger in the map
            wasyncore.close_all(self._map, ignore_all=True)
            self._servers = []
            raise
        self._pools = pools

    @property
    def addresses(self) -> list[Address]:
        """The bound addresses (real ports when 0 was asked), in the order of the listeners."""
        return [Address(str(s.effective_host), int(s.effective_port)) for s in self._servers]

    def start(self) -> None:
        """Start the worker threads and the loop thread ("http-loop")."""
        if self._thread is not None:
            raise RuntimeError("HttpServer.start() called twice")
        if not self._servers:
            self.bind()
        assert self._pools
        for dispatcher, threads in self._pools:
            dispatcher.set_thread_count(threads)
        # daemon: a loop stuck in a way the drain cannot end must not block the process exit
        self._thread = threading.Thread(target=self._run, name="http-loop", daemon=True)
        self._thread.start()
        logger.info("HTTP listening on %s", ", ".join(str(a) for a in self.addresses))

    def is_alive(self) -> bool:
        """True while the loop thread runs and completes loop passes: a pass ends at least
        every second even with no traffic, so a pass older than `loop_stall_timeout` means the
        loop is stuck. Reads two values and never waits: safe to gate a watchdog on."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return False
        return time.monotonic() - self._last_pass < self._loop_stall_timeout

    def in_flight(self, listener: int | None = None) -> int:
        """Requests queued, being processed, or whose answer is still being written: on every
        listener, or on the one at index `listener` (in the order given to the constructor)."""
        count = 0
        servers = self._servers if listener is None else self._servers[listener:listener + 1]
        for server in servers:
            # read from another thread without a lock: a snapshot, good enough for a gauge
            for channel in list(server.active_channels.values()):
                if channel.requests:
                    count += len(channel.requests)
                elif channel.total_outbufs_len:
                    count += 1
        return count

    def stop_accepting(self) -> None:
        """Close the listening sockets (in the loop thread): new connections are refused."""
        if not self._servers:
            return
        self._stop_accepting_requested = True
        if self._loop_running():
            self._pull_trigger()
            if not self._listeners_closed.wait(_LOOP_ANSWER_S):
                logger.warning("HTTP loop did not close the listeners within %.0f s", _LOOP_ANSWER_S)
        else:
            # no loop thread: nothing else touches the map
            self._close_listeners()

    def drain(self, deadline: float) -> bool:
        """Finish the requests in flight, close every connection, stop the workers and the
        loop thread. `deadline` is a time.monotonic() value. True if nothing had to be cut;
        returns by the deadline plus a short bound whatever happens."""
        if not self._servers:
            return True
        if self._thread is not None and not self._thread.is_alive() and not self._map:
            return self._clean  # drained before
        if not self._loop_running():
            return self._close_without_loop()
        self._stop_accepting_requested = True
        self._drain_deadline = deadline
        self._pull_trigger()
        thread = self._thread
        assert thread is not None
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            # the loop thread cuts by itself once past the deadline; wake it to do so now
            self._pull_trigger()
            thread.join(_CUT_GRACE_S)
        if thread.is_alive():
            logger.error("HTTP loop thread did not exit %.0f s after the drain deadline", _CUT_GRACE_S)
            return False
        if self._map:
            # the loop thread died on an error: close what it left, nobody else uses it now
            self._close_without_loop()
            return False
        return self._clean

    # --- loop thread -----------------------------------------------------------------------

    def _run(self) -> None:
        self._last_pass = time.monotonic()
        try:
            while self._map:
                draining = self._drain_deadline is not None
                # one pass of waitress's own loop; `loop` leaves when the map is empty
                wasyncore.loop(
                    timeout=min(_DRAIN_PASS_S, self._pass_timeout) if draining else self._pass_timeout,
                    use_poll=True,
                    map=self._map,
                    count=1,
                )
                self._after_pass()
                self._last_pass = time.monotonic()
        except Exception:
            logger.exception("HTTP loop failed")
        logger.debug("HTTP loop thread exits")

    def _after_pass(self) -> None:
        if self._stop_accepting_requested and not self._listeners_closed.is_set():
            self._close_listeners()
        if self._parked and time.monotonic() >= self._next_hangup_check:
            self._close_hung_up()
        deadline = self._drain_deadline
        if deadline is None:
            if not self._stop_accepting_requested:
                self._make_room()
            return
        cut = time.monotonic() >= deadline
        if self._close_idle_channels() and not cut:
            return
        self._finish(deadline, cut)

    def _make_room(self) -> None:
        """At the connection limit with a client waiting to connect, close the longest-idle
        connections so that the next passes accept it (see the module docstring)."""
        excess = len(self._map) - self._adj.connection_limit + 1
        if excess <= 0 or not self._connection_waiting():
            return
        idle, partial = [], []
        for server in self._servers:
            for channel in server.active_channels.values():
                # `requests`: queued or running; output pending: an answer still being written
                if channel.requests or channel.total_outbufs_len or channel.will_close:
                    continue
                (partial if channel.request is not None else idle).append(channel)
        idle.sort(key=lambda channel: channel.last_activity)
        # a batch of idle connections; half-received requests only as many as strictly needed
        closing = idle[:excess + _RECLAIM_BATCH - 1]
        if len(closing) < excess:
            partial.sort(key=lambda channel: channel.last_activity)
            closing += partial[:excess - len(closing)]
        for channel in closing:
            # loop thread, no request in progress: no worker touches this channel
            channel.handle_close()
        if closing:
            self._reclaim_log.warning(
                "connection limit (%d) reached: closed %d idle connection(s) for new clients",
                self._adj.connection_limit, len(closing))

    def watch_parked(self, channel: "_Channel") -> None:
        """Loop thread: a channel just left the map, parked."""
        fd = channel._fileno
        if fd is not None and fd not in self._parked:
            self._parked[fd] = channel
            self._hangups.register(fd, _HANGUP_EVENTS)
            channel.watched_fd = fd

    def unwatch_parked(self, channel: "_Channel") -> None:
        """Loop thread: a parked channel resumed."""
        fd, channel.watched_fd = channel.watched_fd, None
        if fd is not None and self._parked.get(fd) is channel:
            del self._parked[fd]
            self._hangups.unregister(fd)

    def _close_hung_up(self) -> None:
        """The parked channels whose client reset or stopped sending: close the first, end the
        wait of the others, and wake their waiters: each is resumed on a worker, which releases
        a closed one's place (longpoll.abandon) and answers the others."""
        self._next_hangup_check = time.monotonic() + _HANGUP_CHECK_S
        try:
            events = self._hangups.poll(0)
        except OSError:
            return
        for fd, event in events:
            channel = self._parked.pop(fd, None)
            self._hangups.unregister(fd)
            if channel is None:
                continue
            channel.watched_fd = None
            if not channel.parked or channel._fileno != fd:
                continue
            if event & (select.POLLHUP | select.POLLERR):
                channel.handle_close()  # reset or failed: nobody reads an answer
            else:
                # It stopped sending, and may still read (a half-close): answer it now.
                environ = getattr(channel.requests[0], "mmserver_environ", None) if channel.requests else None
                if environ is not None:
                    longpoll.end_wait(environ)
            waiter = channel.parked_waiter
            if waiter is not None:
                waiter.wake()

    def _connection_waiting(self) -> bool:
        """Whether a listening socket has a connection in its backlog (readable)."""
        poller = select.poll()
        for server in self._servers:
            if server.accepting and server.socket is not None:
                poller.register(server.socket.fileno(), select.POLLIN)
        try:
            return bool(poller.poll(0))
        except OSError:
            return False

    def _close_listeners(self) -> None:
        if self._listeners_closed.is_set():
            return
        for server in self._servers:
            # dispatcher.close, not server.close(): the latter also closes the trigger, which
            # the drain still needs to wake the loop. It removes the listener from the map.
            server.accepting = False
            wasyncore.dispatcher.close(server)
        self._listeners_closed.set()
        logger.info("HTTP listeners closed")

    def _close_idle_channels(self) -> int:
        """Mark every connection without a request in progress to close once its output is
        flushed. Returns how many connections are still open."""
        remaining = 0
        for server in self._servers:
            for channel in list(server.active_channels.values()):
                remaining += 1
                # `requests`: queued or running; `request`: partly received. Such a channel
                # must not be marked: close_when_flushed would close it as soon as its (still
                # empty) output buffer is flushed, before the answer is written.
                busy = bool(channel.requests) or channel.request is not None
                if not busy and not channel.will_close:
                    # readable() is False from now on, so no new request is read on it
                    channel.close_when_flushed = True
        return remaining

    def _finish(self, deadline: float, cut: bool) -> None:
        assert self._pools
        if cut:
            busy = self.in_flight()
            logger.warning("HTTP drain deadline passed: cutting %d request(s) in flight", busy)
            for server in self._servers:
                for channel in list(server.active_channels.values()):
                    # handle_close (not close) also wakes a worker blocked on the output
                    # buffer; the worker then sees connected=False and stops writing
                    channel.handle_close()
        # Workers are idle unless a client went away while its request still runs: give such
        # a request until the deadline. set_thread_count(0) inside makes every worker exit.
        workers_left = 0
        for dispatcher, _threads in self._pools:
            remaining = 0.0 if cut else max(0.0, deadline - time.monotonic())
            dispatcher.shutdown(cancel_pending=True, timeout=remaining)
            workers_left += len(dispatcher.threads)
        with self._lock:
            self._closed = True
            # closes both triggers (and anything else left); the loop leaves on an empty map
            wasyncore.close_all(self._map, ignore_all=True)
        self._clean = not cut and workers_left == 0
        logger.info("HTTP drain %s", "complete" if self._clean else "cut at the deadline")

    # --- helpers ---------------------------------------------------------------------------

    def _loop_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _pull_trigger(self, thunk: Callable[[], None] | None = None) -> bool:  # thunk: test seam
        """Wake the loop thread (and run `thunk` there). False once the trigger is closed."""
        with self._lock:
            if self._closed:
                return False
            # the first server's trigger; every trigger in the map is read by the same loop
            self._servers[0].trigger.pull_trigger(thunk)
            return True

    def _close_without_loop(self) -> bool:
        """Close everything from the calling thread: only when no loop thread runs."""
        self._close_listeners()
        for dispatcher, _threads in self._pools:
            dispatcher.shutdown(cancel_pending=True, timeout=0)
        with self._lock:
            self._closed = True
            wasyncore.close_all(self._map, ignore_all=True)
        # never started: nothing could be in flight; a loop that died may have cut requests
        self._clean = self._thread is None
        return self._clean


def _sockinfo(address: Address) -> tuple[int, int, int, Any]:
    """waitress's (family, type, proto, sockaddr) for one listener; first resolved address."""
    infos = socket.getaddrinfo(
        address.host or None, address.port, socket.AF_UNSPEC, socket.SOCK_STREAM,
        socket.IPPROTO_TCP, socket.AI_PASSIVE,
    )
    family, socktype, proto, _canonname, sockaddr = infos[0]
    return family, socktype, proto, sockaddr


class _Dispatcher(ThreadedTaskDispatcher):
    """waitress's dispatcher, its workers named waitress-<pool>-N for a listener's own pool, and
    its "Task queue depth is N" warnings (one per queued request while every worker is busy)
    throttled to one line per interval."""

    def __init__(self, pool: str, busy_prefix: str) -> None:
        super().__init__()
        self._prefix = f"waitress-{pool}-" if pool else "waitress-"
        # instance attribute: shadows the class-level logger waitress uses
        self.queue_logger = ThrottledWarnings(logger, _QUEUE_WARNING_INTERVAL_S, busy_prefix)

    def start_new_thread(self, target: Callable[[int], None], thread_no: int) -> None:
        # waitress 3.0's own body, with the pool's name
        thread = threading.Thread(target=target, name=f"{self._prefix}{thread_no}", args=(thread_no,))
        thread.daemon = True
        thread.start()


class _JsonErrorTask(ErrorTask):
    """waitress's own refusals, made before any app runs (a malformed request line or
    Content-Length, headers over max_header, a body over the transport cap), in the API's error
    shape {"title", "description"} instead of waitress's plain text."""

    def execute(self) -> None:
        error = self.request.error
        detail = str(error.body)  # e.g. "exceeds max_header of 262144"
        description = f"The request {detail}." if detail.startswith("exceeds") else f"{detail}."
        body = json.dumps({"title": error.reason, "description": description}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Parked(BaseException):
    """A long-poll asked to be parked (longpoll.PARK). A BaseException so that waitress's
    handlers of Exception (which would answer 500) let it through to _Channel.service."""

    def __init__(self, waiter: Any, timeout: float) -> None:
        super().__init__()
        self.waiter, self.timeout = waiter, timeout


def _parking_app(app: WSGIApp) -> WSGIApp:
    def parking_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        result = app(environ, start_response)
        park = environ.get(longpoll.PARK)
        if park is not None:
            close = getattr(result, "close", None)
            if close is not None:
                close()
            # the status and headers given to start_response die with this task
            raise _Parked(*park)
        return result

    return parking_app


class _Task(WSGITask):
    """waitress's WSGI task, whose environ says the request can be parked, and which reuses the
    environ of a request resumed after a park (the long-poll's state lives in it)."""

    def get_environment(self) -> dict[str, Any]:
        if self.environ is None:
            environ = getattr(self.request, "mmserver_environ", None)
            if environ is None:
                environ = super().get_environment()
                environ[longpoll.PARKING] = True
                self.request.mmserver_environ = environ
            self.environ = environ
        return self.environ


class _Channel(HTTPChannel):
    error_task_class = _JsonErrorTask
    task_class = _Task
    parked = False  # set by a worker when it parks the request, cleared in the loop thread
    parked_waiter: Any = None  # the waiter of the parked request (a hang-up wakes it)
    parks = 0  # how many times a request of this channel parked (_unmap: which park asks)
    watched_fd: int | None = None  # its descriptor while HttpServer watches it for a hang-up

    def service(self) -> None:
        request = self.requests[0]
        environ = getattr(request, "mmserver_environ", None)
        if environ is not None and not self.connected:
            # closed while parked: waitress will not run the app again, so nothing else would
            # release the waiter before its timeout
            longpoll.abandon(environ)
        try:
            super().service()
        except _Parked as parked:
            # The worker is done with this request (super().service() left at once, the request
            # still first in self.requests). Park it now; a wake since the responder returned
            # was recorded on the waiter and makes park() refuse: run the request again at once.
            self.parked = True
            self.parked_waiter = parked.waiter
            self.parks += 1
            park = self.parks
            if parked.waiter.park(self._resume, parked.timeout):
                self.server.trigger.pull_trigger(lambda: self._unmap(park))
            else:
                self.parked = False
                self.server.add_task(self)

    def _unmap(self, park: int) -> None:
        """Loop thread: take a parked channel out of the socket map. waitress's loop visits
        every channel of the map on every pass (wasyncore.poll2 asks each one readable() and
        writable() to build the poll set): thousands of parked channels there would cost every
        other request milliseconds per pass. Out of the map it is still in the server's
        active_channels, which the drain, the connection-limit reclaim and in_flight() read.
        `park`: which park asked. A wake can resume that park before this runs, and a worker
        can be parking the request again meanwhile (`parked` set, the park not yet made or
        refused): an older park's unmap must not take that channel out of the map, where its
        answer would never be written."""
        if self.parked and self.parks == park and self.connected:
            self._map.pop(self._fileno, None)
            if self.server.http_server is not None:
                self.server.http_server.watch_parked(self)

    def _resume(self) -> None:
        # any thread (subscriber, alarms, close): the rest happens in the loop thread, in
        # order after _unmap
        self.server.trigger.pull_trigger(self._resumed)

    def _resumed(self) -> None:
        if self.server.http_server is not None:
            self.server.http_server.unwatch_parked(self)
        self.parked = False
        self.parked_waiter = None
        if self.connected and self._fileno is not None:
            self._map[self._fileno] = self
        # a closed channel goes to a worker too: service() releases its waiter
        self.server.add_task(self)


class _Server(TcpWSGIServer):
    channel_class = _Channel
    http_server: HttpServer | None = None  # watches its parked channels for a hang-up
    probe_paths: frozenset[str] = frozenset()
    probe_dispatcher: ThreadedTaskDispatcher | None = None

    def add_task(self, channel: _Channel) -> None:
        # Loop thread (a request read, a long-poll resumed) or a worker (the next pipelined
        # request): waitress services one request per task, the first of channel.requests.
        request = channel.requests[0] if channel.requests else None
        if (self.probe_dispatcher is not None and request is not None and not request.error
                and request.path in self.probe_paths):
            self.probe_dispatcher.add_task(channel)
        else:
            self.task_dispatcher.add_task(channel)
