"""Real machines for the live tests: a Debian root file system made with mmdebstrap, mmserver
installed into it from this checkout, and systemd booted on it as PID 1 in systemd-nspawn.

How this machine kind allows it (shared/NOTES.md, "Real systemd and real images here"): no
system bus on the host, so nspawn runs with --register=no --keep-unit; the container's systemd
owns the cgroup its nspawn process was started in, so each machine gets a fresh one of its own
and removes it afterwards; commands reach the container through nsenter on its PID 1.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.ops.files import REPO
from tests.process.harness import children_of

# The name=systemd hierarchy of this cgroup v1 host; on a unified (v2) host, the root itself.
CGROUP_ROOTS = (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup"))
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def run(*args: str, timeout: float = 600, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def debootstrap(root: Path, packages: list[str]) -> None:
    """A minimal bookworm (the release this machine runs) with `packages`, in `root`."""
    run("mmdebstrap", "--variant=minbase", "--include=" + ",".join(packages), "bookworm", str(root),
        timeout=900)


def build_wheel(directory: Path) -> Path:
    """This checkout as a wheel (not editable: the installed files are the ones that ship)."""
    directory.mkdir(parents=True, exist_ok=True)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(directory), str(REPO))
    (wheel,) = directory.glob("mmserver-*.whl")
    return wheel


def install_mmserver(root: Path, wheel: Path) -> None:
    """/opt/mmserver/.venv as docs/DEPLOY.md lays it out, made by the root file system's own
    Python (bookworm's 3.11.2 needs dependencies the host's Python does not, such as
    async-timeout for redis-py). Dependencies come from the package index, as on a real host;
    the host's CA bundle is lent for that one step."""
    run("systemd-nspawn", "-q", "-D", str(root), "--register=no", "--keep-unit", "-M", f"mminstall{os.getpid()}",
        f"--bind-ro={wheel.parent}:/wheels", f"--bind-ro={HOST_CA}:/run/host-ca.crt",
        "--setenv=PIP_CERT=/run/host-ca.crt", "--setenv=PIP_DISABLE_PIP_VERSION_CHECK=1", "--pipe", "--",
        "/bin/sh", "-c", f"python3 -m venv /opt/mmserver/.venv && "
        f"/opt/mmserver/.venv/bin/pip install -q /wheels/{wheel.name}", stdin=subprocess.DEVNULL, timeout=900)


class Machine:
    """systemd booted on `root` (host network) until stop(); `sh()` runs a command inside."""

    def __init__(self, root: Path, name: str, log: Path) -> None:
        self.root = root
        self.name = name
        self.log = log
        self.cgroup = next(r for r in CGROUP_ROOTS if (r / "cgroup.procs").exists()) / f"mmlive-{name}"
        self.process: subprocess.Popen | None = None
        self.leader: int | None = None  # the container's PID 1, as the host sees it

    def boot(self, timeout: float = 60) -> "Machine":
        self.cgroup.mkdir()
        cgroup_procs = self.cgroup / "cgroup.procs"
        # The shell moves itself into the machine's own cgroup, then becomes nspawn: the
        # container's systemd then manages that cgroup and nothing of the host's.
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                ["sh", "-c", f'echo $$ > {cgroup_procs} && exec systemd-nspawn -b -D "$0" -M "$1" '
                 "--register=no --keep-unit --console=pipe", str(self.root), self.name],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited {self.process.returncode}:\n{self.log.read_text()}")
            children = children_of(self.process.pid)
            if children:
                self.leader = children[0]
                state = self.sh("systemctl", "is-system-running", check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return self
            time.sleep(0.2)
        raise AssertionError(f"systemd did not finish booting in {timeout} s:\n{self.log.read_text()}")

    def sh(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        assert self.leader, "not booted"
        return run("nsenter", "-t", str(self.leader), "-a", *args, check=check, timeout=timeout)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.sh("systemctl", "show", unit, "-p", ",".join(properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str) -> str:
        return self.sh("journalctl", "-u", unit, "--no-pager", "-o", "cat", check=False).stdout

    def stop(self) -> None:
        """Halt the machine (SIGTERM to nspawn halts it cleanly), SIGKILL if it hangs, and remove
        its cgroup. Safe to call on a machine that never booted."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if self.cgroup.exists():
            for leftover in (self.cgroup / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(leftover), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while self.cgroup.exists() and time.monotonic() < deadline:
                for directory in sorted(self.cgroup.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                    if directory.is_dir():
                        try:
                            directory.rmdir()
                        except OSError:
                            pass
                try:
                    self.cgroup.rmdir()
                except OSError:
                    time.sleep(0.2)


def remove_tree(path: Path) -> None:
    """rm -rf of a root file system; refuses if anything is still mounted below it."""
    if not path.exists():
        return
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    below = [line for line in mounts if f" {path}/" in line or f" {path} " in line]
    if below:
        raise AssertionError(f"still mounted under {path}: {below}")
    shutil.rmtree(path, ignore_errors=True)
