"""The Dockerfile, built and run with podman: from a local Debian base (mmdebstrap, since no
registry is reachable here) through the BASE_IMAGE build argument, then run the way the
Kubernetes manifests run it: read-only root file system, writable /tmp and data directory only,
the image's own non-root user. The test checks /readyz, plays one match through the public API,
and stops the container with SIGTERM: mmserver is PID 1 and exits 0.

Everything podman makes lives in the test's own storage root (--root/--runroot) and is removed
afterwards, whatever happens; nothing touches the host's image store.
"""
from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.live.conftest import need
from tests.live.machines import HOST_CA, debootstrap, run
from tests.ops.files import REPO
from tests.process.harness import request
from tests.redis_server import free_port
from tests.waiting import wait_until

# A base file system and a two-stage build take minutes, not pytest.ini's 120 s.
pytestmark = [pytest.mark.live, pytest.mark.timeout(1200)]

CONTAINERS_CONF = """
# This machine kind (shared/NOTES.md): crun cannot handle the hybrid cgroup layout, there is no
# journald for events, and the default ulimits exceed the hard limits.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

CONFIG = """
[modes.duel]
team_size = 1
teams = 2
accept_timeout_s = 0

[auth]
open = true          # loopback listeners only (host network): the test plays the game backend

[servers]
token = "image-test-server-token-0123456789"
static = ["10.0.0.5:7777"]
"""


class Podman:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        (directory / "containers.conf").write_text(CONTAINERS_CONF)
        self.env = {"CONTAINERS_CONF": str(directory / "containers.conf"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        self.base = [need("podman")["podman"], "--root", str(directory / "storage"),
                     "--runroot", str(directory / "run")]

    def __call__(self, *args: str, check: bool = True, timeout: float = 1200) -> subprocess.CompletedProcess:
        return run(*self.base, *args, check=check, timeout=timeout, env=self.env)

    def remove_everything(self) -> None:
        self("rm", "--all", "--force", "--volumes", check=False, timeout=120)
        self("rmi", "--all", "--force", check=False, timeout=120)
        # Unmounts what the storage driver still holds, then removes the storage itself.
        self("system", "reset", "--force", check=False, timeout=120)
        # podman's cgroupfs manager leaves its parent cgroups behind. Removed only when empty:
        # rmdir refuses a cgroup that still holds a process or a child, such as another user's.
        for parent in Path("/sys/fs/cgroup").glob("*/libpod_parent"):
            for directory in (parent / "conmon", parent):
                try:
                    directory.rmdir()
                except OSError:
                    pass


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    need("mmdebstrap", "runc")
    work = tmp_path_factory.mktemp("image")
    podman = Podman(work)
    tag = secrets.token_hex(3)
    try:
        started = time.monotonic()
        debootstrap(work / "base.tar", ["python3", "python3-venv"])
        podman("import", str(work / "base.tar"), f"localhost/mmserver-live-base:{tag}")
        (work / "base.tar").unlink()
        podman("build", "--pull=never", "--network", "host",
                       "--build-arg", f"BASE_IMAGE=localhost/mmserver-live-base:{tag}",
                       # pip in the builder reaches the package index through this machine's
                       # TLS proxy: the CA is lent to the build and stays out of every layer.
                       "-v", f"{HOST_CA}:/run/host-ca.crt:ro", "--build-arg", "PIP_CERT=/run/host-ca.crt",
                       "-t", f"localhost/mmserver-live:{tag}", str(REPO))
        size = int(podman("image", "inspect", "--format", "{{.Size}}", f"localhost/mmserver-live:{tag}").stdout)
        print(f"image built in {time.monotonic() - started:.0f} s; size {size / 1e6:.0f} MB "
              f"(Debian bookworm base with python3)", flush=True)
        assert "PIP_CERT" not in json.dumps(json.loads(podman("image", "inspect", f"localhost/mmserver-live:{tag}").stdout)[0]["Config"])
        yield podman, f"localhost/mmserver-live:{tag}"
    finally:
        podman.remove_everything()


def deployment_security_context() -> dict:
    deployment = next(d for d in yaml.safe_load_all((REPO / "k8s" / "30-mmserver.yaml").read_text())
                      if d and d["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]


def test_image_runs_read_only_as_non_root_serves_a_match_and_stops_on_sigterm(image, tmp_path):
    podman, tag = image
    pod = deployment_security_context()
    (container,) = [c for c in pod["containers"] if c["name"] == "mmserver"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    config = tmp_path / "etc"
    config.mkdir()
    (config / "mmserver.toml").write_text(CONFIG)
    (config / "mmserver.toml").chmod(0o644)
    port, admin_port = free_port(), free_port()
    token = secrets.token_hex(16)
    name = f"mmserver-live-{secrets.token_hex(3)}"
    podman("run", "--detach", "--name", name, "--network", "host",
           # As the pods run: read-only root, /tmp and the data directory writable (emptyDirs
           # there; an anonymous volume here keeps the image's owner and mode of the directory).
           "--read-only", "--tmpfs", "/tmp", "--volume", "/var/lib/mmserver",
           "--volume", f"{config}:/etc/mmserver:ro",
           "--env", f"MMSERVER_LISTEN=127.0.0.1:{port}", "--env", f"MMSERVER_ADMIN_LISTEN=127.0.0.1:{admin_port}",
           "--env", f"MMSERVER_ADMIN_TOKEN={token}", "--env", "MMSERVER_CONFIG=/etc/mmserver/mmserver.toml",
           "--env", "MMSERVER_DRAIN_DELAY_S=1", tag)
    try:
        def ready() -> bool:
            try:
                return request(f"http://127.0.0.1:{admin_port}/readyz", timeout=2).status == 200
            except OSError:
                return False

        assert wait_until(ready, 60, interval=0.3), podman("logs", name, check=False).stdout

        # Non-root, with the uid the pods' runAsUser expects; mmserver itself is PID 1.
        uid = podman("exec", name, "id", "-u").stdout.strip()
        assert uid == str(pod["securityContext"]["runAsUser"]) and uid != "0"
        pid1 = podman("exec", name, "cat", "/proc/1/cmdline").stdout.split("\0")
        assert pid1[1].endswith("/mmserver"), pid1
        # The root file system refuses writes; the data directory takes them.
        refused = podman("exec", name, "sh", "-c", "echo x > /opt/mmserver/x", check=False)
        assert refused.returncode != 0 and "Read-only file system" in refused.stderr
        assert podman("exec", name, "sh", "-c", "echo x > /var/lib/mmserver/probe", check=False).returncode == 0

        # One match through the image: two duel tickets, assigned to the static server.
        base = f"http://127.0.0.1:{port}"
        tickets = []
        for player in ("image-a", "image-b"):
            answer = request(base + "/v1/tickets", "POST", {"player_id": player, "mode": "duel", "mmr": 1500})
            assert answer.status == 201, answer.body
            tickets.append(answer.json())

        def assigned():
            views = [request(f"{base}/v1/tickets/{t['ticket_id']}", token=t["token"]).json() for t in tickets]
            return views if all(v["status"] == "assigned" for v in views) else None

        views = wait_until(assigned, 30, interval=0.2)
        assert views, [request(f"{base}/v1/tickets/{t['ticket_id']}", token=t["token"]).json() for t in tickets]
        assert {v["assignment"]["match_id"] for v in views} == {views[0]["assignment"]["match_id"]}
        assert views[0]["assignment"]["server"] == "10.0.0.5:7777"

        # SIGTERM to the container is SIGTERM to PID 1: mmserver's own graceful stop, exit 0.
        podman("kill", "--signal", "TERM", name)
        status = podman("wait", name, timeout=60).stdout.strip()
        logs = podman("logs", name, check=False)
        print("last log line:", (logs.stdout + logs.stderr).strip().splitlines()[-1])
        assert status == "0", logs.stdout + logs.stderr
        assert "exit status 0: SIGTERM received" in logs.stdout + logs.stderr
    finally:
        podman("rm", "--force", "--volumes", name, check=False, timeout=120)
