"""systemd/mmserver.service under a real systemd (PID 1 in systemd-nspawn), with mmserver
installed from this checkout the way docs/DEPLOY.md says: a venv in /opt/mmserver/.venv, the
shipped unit, TOML and environment file in place, the secrets as root-only files handed over as
credentials. The unit is copied unchanged; the environment file (configuration, not the unit)
puts the listeners on free loopback ports, since the machine shares the host's network, and
shortens the drain delay.

What systemd itself reports is the evidence (`systemctl show`: ActiveState, Result,
ExecMainStatus, NRestarts), printed as the test goes:
- Type=notify: with Redis away the unit stays `activating` and /readyz is 503; it turns
  `active` only once Redis answers (READY=1 sent then);
- `mmadmin shutdown` -> exit 1 -> restarted after RestartSec -> active again, every ticket intact
  (the embedded Redis's append-only file in the StateDirectory);
- a frozen main loop (SIGSTOP) stops the WATCHDOG=1 pings -> Result=watchdog -> restarted;
- `systemctl stop` (SIGTERM) -> exit 0 -> not restarted;
- a bad configuration -> exit 2 -> not restarted (RestartPreventExitStatus=2).
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest

from tests.live.conftest import need
from tests.live.machines import Machine, build_wheel, debootstrap, install_mmserver, remove_tree
from tests.ops.files import REPO, parse_env_file, parse_unit, single, timespan_seconds
from tests.process.harness import request
from tests.redis_server import RedisServer, free_port
from tests.waiting import wait_until

UNIT = "mmserver.service"
PACKAGES = ["systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "iproute2", "procps"]
FIGURES = ("ActiveState", "SubState", "Result", "ExecMainStatus", "NRestarts", "MainPID")
SHIPPED_UNIT = parse_unit((REPO / "systemd" / "mmserver.service").read_text())["Service"]
# Building the root file system and the watchdog's wait take minutes, not pytest.ini's 120 s.
pytestmark = [pytest.mark.live, pytest.mark.timeout(900)]
RESTART_S = timespan_seconds(single(SHIPPED_UNIT, "RestartSec"))
WATCHDOG_S = timespan_seconds(single(SHIPPED_UNIT, "WatchdogSec"))


class Deployment:
    """The booted machine with mmserver installed, and what the test needs to reach it."""

    def __init__(self, machine: Machine, root: Path, port: int, admin_port: int) -> None:
        self.machine = machine
        self.root = root
        self.port = port
        self.admin_port = admin_port
        self.backend_key = (root / "etc/mmserver/backend.keys").read_text().strip()
        self.env_file = root / "etc/mmserver/mmserver.env"
        self.base_env = self.env_file.read_text()

    def show(self) -> dict[str, str]:
        figures = self.machine.show(UNIT, *FIGURES)
        print("systemctl show:", " ".join(f"{k}={figures[k]}" for k in FIGURES), flush=True)
        return figures

    def wait_for(self, predicate, timeout: float, what: str) -> dict[str, str]:
        figures: dict[str, str] = {}

        def reached() -> bool:
            figures.clear()
            figures.update(self.machine.show(UNIT, *FIGURES))
            return predicate(figures)

        if not wait_until(reached, timeout, interval=0.1):
            raise AssertionError(f"{what}: not reached in {timeout} s; last {figures}\n"
                                 + self.machine.journal(UNIT)[-4000:])
        print(f"{what}: " + " ".join(f"{k}={figures[k]}" for k in FIGURES), flush=True)
        return figures

    def readyz(self) -> int:
        try:
            return request(f"http://127.0.0.1:{self.admin_port}/readyz", timeout=2).status
        except OSError:
            return 0  # not listening

    def api(self, path: str, method: str = "GET", body: object | None = None):
        return request(f"http://127.0.0.1:{self.port}{path}", method, body, token=self.backend_key)

    def set_env(self, extra: str = "") -> None:
        self.env_file.write_text(self.base_env + extra)

    def systemctl(self, *args: str, check: bool = True):
        return self.machine.sh("systemctl", *args, check=check, timeout=120)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    need("mmdebstrap", "systemd-nspawn", "nsenter")
    work = tmp_path_factory.mktemp("systemd")
    root = work / "root"
    machine = Machine(root, f"mm{secrets.token_hex(3)}", work / "boot.log")
    try:
        started = time.monotonic()
        debootstrap(root, PACKAGES)
        install_mmserver(root, build_wheel(work / "wheels"))
        print(f"root file system with mmserver: {time.monotonic() - started:.0f} s", flush=True)
        port, admin_port = free_port(), free_port()
        _install_configuration(root, port, admin_port)
        machine.boot()
        print(f"systemd booted: {machine.sh('systemctl', 'is-system-running', check=False).stdout.strip()}")
        yield Deployment(machine, root, port, admin_port)
    finally:
        machine.stop()
        remove_tree(root)


def _install_configuration(root: Path, port: int, admin_port: int) -> None:
    """docs/DEPLOY.md's install steps: root-only /etc/mmserver, the shipped files, fresh secrets,
    the unit in /etc/systemd/system. Not enabled: the boot must not start it before the test
    watches (the test starts it itself)."""
    etc = root / "etc/mmserver"
    etc.mkdir(mode=0o700)
    for name in ("admin-token", "backend.keys", "server.token", "jwt.secret"):
        (etc / name).write_text(secrets.token_hex(32) + "\n")
        (etc / name).chmod(0o600)
    (etc / "mmserver.toml").write_text((REPO / "systemd/mmserver.toml").read_text())
    (etc / "mmserver.toml").chmod(0o600)
    env = (REPO / "systemd/mmserver.env").read_text()
    shipped = parse_env_file(env)
    assert {"MMSERVER_LISTEN", "MMSERVER_ADMIN_LISTEN", "MMSERVER_DRAIN_DELAY_S"} <= set(shipped)
    env = (env.replace(f"MMSERVER_LISTEN={shipped['MMSERVER_LISTEN']}", f"MMSERVER_LISTEN=127.0.0.1:{port}")
           .replace(f"MMSERVER_ADMIN_LISTEN={shipped['MMSERVER_ADMIN_LISTEN']}",
                    f"MMSERVER_ADMIN_LISTEN=127.0.0.1:{admin_port}")
           .replace(f"MMSERVER_DRAIN_DELAY_S={shipped['MMSERVER_DRAIN_DELAY_S']}", "MMSERVER_DRAIN_DELAY_S=1"))
    (etc / "mmserver.env").write_text(env)
    unit = root / "etc/systemd/system" / UNIT
    unit.write_bytes((REPO / "systemd" / UNIT).read_bytes())  # byte for byte as shipped


def create_tickets(deployment: Deployment, count: int) -> dict[str, str]:
    """`count` squad tickets (8 players make a squad match, so they all stay queued): {id: status}."""
    tickets = {}
    for index in range(count):
        answer = deployment.api("/v1/tickets", "POST", {"player_id": f"live-{index}", "mode": "squad",
                                                         "mmr": 1000 + 10 * index})
        assert answer.status == 201, answer.body
        tickets[answer.json()["ticket_id"]] = answer.json()["status"]
    return tickets


def ticket_states(deployment: Deployment, ids) -> dict[str, str | int]:
    states = {}
    for ticket_id in ids:
        answer = deployment.api(f"/v1/tickets/{ticket_id}")
        states[ticket_id] = answer.json()["status"] if answer.status == 200 else answer.status
    return states


def test_the_shipped_unit_under_a_real_systemd(deployment, tmp_path):
    d = deployment
    assert (d.root / "etc/systemd/system" / UNIT).read_bytes() == (REPO / "systemd" / UNIT).read_bytes()
    assert d.machine.sh("systemd-analyze", "verify", UNIT, check=False).returncode == 0

    # --- READY=1 only once Redis answers: first with no Redis at all -------------------------
    redis_port = free_port()
    d.set_env(f"MMSERVER_REDIS_URL=redis://127.0.0.1:{redis_port}/0\n")
    d.systemctl("start", "--no-block", UNIT)
    d.wait_for(lambda f: f["SubState"] == "start" and d.readyz() == 503, 30, "listening, Redis away")
    time.sleep(3)  # several reconnect attempts: still no READY=1
    waiting = d.show()
    assert (waiting["ActiveState"], waiting["SubState"]) == ("activating", "start")
    assert d.readyz() == 503
    # What mmserver itself last told systemd (STATUS=): it is waiting, not stuck elsewhere.
    print("StatusText while Redis is away:", d.machine.show(UNIT, "StatusText")["StatusText"])
    assert "Redis" in d.machine.show(UNIT, "StatusText")["StatusText"]
    redis = RedisServer(tmp_path / "redis", port=redis_port).start()
    try:
        d.wait_for(lambda f: f["ActiveState"] == "active", 30, "Redis answers -> READY=1")
        assert d.readyz() == 200
        assert d.machine.show(UNIT, "StatusText")["StatusText"].startswith("ready")
        d.systemctl("stop", UNIT)
    finally:
        redis.kill()

    # --- the embedded Redis, as shipped: start blocks until READY=1 ---------------------------
    d.set_env()
    d.systemctl("start", UNIT)
    assert d.show()["ActiveState"] == "active" and d.readyz() == 200
    tickets = create_tickets(d, 5)
    assert set(ticket_states(d, tickets).values()) == {"queued"}

    # --- mmadmin shutdown: exit 1, restarted by systemd, ready again, nothing lost -------------
    before = int(d.show()["NRestarts"])
    said = d.machine.sh("/opt/mmserver/.venv/bin/mmadmin", "--url", f"http://127.0.0.1:{d.admin_port}",
                        "--token-file", "/etc/mmserver/admin-token", "shutdown", "--reason", "live test").stdout
    assert "exit_status=1" in said, said
    exited = d.wait_for(lambda f: f["SubState"] == "auto-restart", 60, "after mmadmin shutdown")
    assert (exited["ExecMainStatus"], exited["Result"]) == ("1", "exit-code")
    restarted = d.wait_for(lambda f: f["ActiveState"] == "active" and int(f["NRestarts"]) == before + 1,
                           RESTART_S + 60, "restarted")
    assert d.readyz() == 200
    assert ticket_states(d, tickets) == tickets
    status = json.loads(d.machine.sh("/opt/mmserver/.venv/bin/mmadmin", "--url", f"http://127.0.0.1:{d.admin_port}",
                                     "--token-file", "/etc/mmserver/admin-token", "--json", "status").stdout)
    assert status["queues"]["squad"]["queued"] == len(tickets)

    # --- the watchdog: a frozen main loop sends no WATCHDOG=1 --------------------------------
    frozen_pid = restarted["MainPID"]
    d.machine.sh("kill", "-STOP", frozen_pid)
    frozen_at = time.monotonic()
    killed = d.wait_for(lambda f: f["Result"] == "watchdog", WATCHDOG_S + 30, "watchdog timeout")
    waited = time.monotonic() - frozen_at
    print(f"watchdog fired {waited:.1f} s after SIGSTOP (WatchdogSec={WATCHDOG_S:.0f} s)")
    assert waited <= WATCHDOG_S + 5
    assert killed["SubState"] in ("auto-restart", "stop-watchdog", "final-watchdog", "final-sigkill")
    again = d.wait_for(lambda f: f["ActiveState"] == "active" and int(f["NRestarts"]) == before + 2,
                       RESTART_S + 90, "restarted after the watchdog")
    assert again["MainPID"] != frozen_pid and d.readyz() == 200
    assert "Watchdog timeout" in d.machine.journal(UNIT)
    assert ticket_states(d, tickets) == tickets

    # --- systemctl stop: SIGTERM, exit 0, and no restart --------------------------------------
    d.systemctl("stop", UNIT)
    stopped = d.show()
    assert (stopped["ActiveState"], stopped["Result"], stopped["ExecMainStatus"]) == ("inactive", "success", "0")
    time.sleep(RESTART_S + 2)  # longer than RestartSec: a restart would have happened by now
    later = d.show()
    assert later["ActiveState"] == "inactive" and later["NRestarts"] == stopped["NRestarts"]

    # --- a bad configuration: exit 2, and no restart ------------------------------------------
    d.set_env("MMSERVER_TICK_INTERVAL_MS=not-a-number\n")
    assert d.systemctl("start", UNIT, check=False).returncode != 0
    failed = d.wait_for(lambda f: f["ActiveState"] == "failed", 30, "bad configuration")
    assert (failed["ExecMainStatus"], failed["Result"]) == ("2", "exit-code")
    time.sleep(RESTART_S + 2)
    final = d.show()
    # (A manual start resets NRestarts, so it is compared with its value at the failure.)
    assert final["ActiveState"] == "failed" and final["NRestarts"] == failed["NRestarts"]
    assert "MMSERVER_TICK_INTERVAL_MS" in d.machine.journal(UNIT)
    d.set_env()
