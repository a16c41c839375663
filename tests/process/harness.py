"""Run the real `mmserver` command as a child process and talk to it over real sockets."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from mmserver.store import keys
from tests.redis_server import free_port


class HttpAnswer:
    def __init__(self, status: int, body: bytes, headers: dict) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    def json(self):
        return json.loads(self.body)


def request(url: str, method: str = "GET", body: object | None = None, token: str | None = None,
            timeout: float = 10.0) -> HttpAnswer:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return HttpAnswer(answer.status, answer.read(), dict(answer.headers))
    except urllib.error.HTTPError as error:
        return HttpAnswer(error.code, error.read(), dict(error.headers))


class MMServer:
    """One replica: `start()`, `wait_ready()`, HTTP helpers, signals, `wait()` for the exit status."""

    # Every replica this test process started, in order: the suite's conftest kills those a
    # test leaves running, so that none goes on ticking against the shared Redis of later tests.
    started: list["MMServer"] = []

    def __init__(self, directory: Path, *, redis_url: str | None = None, env: dict | None = None,
                 args: list[str] | None = None) -> None:
        self.directory = Path(directory)
        self.port = free_port()
        self.admin_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("MMSERVER_", "NOTIFY_SOCKET", "WATCHDOG_"))}
        self.env.update({
            "MMSERVER_LISTEN": f"127.0.0.1:{self.port}",
            "MMSERVER_ADMIN_LISTEN": f"127.0.0.1:{self.admin_port}",
            "MMSERVER_DATA_DIR": str(self.directory / "data"),
            "MMSERVER_ADMIN_TOKEN": "test-admin-token",
            "MMSERVER_TICK_INTERVAL_MS": "100",
            "MMSERVER_SHUTDOWN_TIMEOUT_S": "10",
            "PYTHONUNBUFFERED": "1",
        })
        if redis_url:
            self.env["MMSERVER_REDIS_URL"] = redis_url
        self.env.update(env or {})
        self.args = args or []
        self.process: subprocess.Popen | None = None
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def admin_token(self) -> str:
        return self.env.get("MMSERVER_ADMIN_TOKEN", "")

    def start(self) -> "MMServer":
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mmserver", *self.args], env=self.env, cwd=self.directory,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        MMServer.started.append(self)
        return self

    def _read(self) -> None:
        assert self.process and self.process.stdout
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 30.0) -> "MMServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise AssertionError(f"mmserver exited with {self.process.returncode}:\n{self.output()}")
            try:
                if request(self.url + "/readyz", timeout=1).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"mmserver not ready after {timeout} s:\n{self.output()}")

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"mmserver still running after {timeout} s:\n{self.output()}")
        if self._reader:
            self._reader.join(5)
        return status

    def signal(self, signum: int) -> None:
        assert self.process
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def get(self, path: str, **kwargs) -> HttpAnswer:
        return request(self.url + path, **kwargs)

    def post(self, path: str, body: object, **kwargs) -> HttpAnswer:
        return request(self.url + path, "POST", body, **kwargs)

    def admin(self, path: str, method: str = "GET", body: object | None = None, token: str | None = None,
              **kwargs) -> HttpAnswer:
        return request(self.admin_url + path, method, body,
                       token=self.admin_token if token is None else token, **kwargs)


def children_of(pid: int) -> list[int]:
    """Pids whose parent is `pid` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def redis_servers_for(data_dir: Path) -> list[int]:
    """Pids of live redis-server processes whose command line mentions data_dir."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if "redis-server" in cmdline and str(data_dir) in cmdline and state != "Z":
            found.append(int(entry))
    return found


def ticket_in_redis(client, ticket_id: str) -> bool:
    """Whether this Redis holds the ticket: as its own hash, or as a queued ticket's record."""
    return bool(client.exists(keys.ticket(ticket_id)) or client.hexists(keys.queued_tickets(ticket_id), ticket_id))
