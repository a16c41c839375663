"""Faults: a plan drawn from the seed (when, what, on which replica, how long) and the injector
that carries it out against the running processes.

Faults are injected one after another: before each, the injector waits for its planned time
and for every replica to be ready again, so that each exit status can be attributed to the
fault that caused it.
"""
from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass

from tests.chaos.api import call
from tests.chaos.cluster import DurableRedis, OutageClock, Supervisor
from tests.chaos.settings import ADMIN_TOKEN, ChaosSettings
from tests.chaos.traffic import Players, ServerFleet

logger = logging.getLogger(__name__)

KINDS = (
    "replica_sigkill",         # crash at any instant
    "replica_sigterm",         # graceful stop: exit 0
    "replica_double_sigterm",  # a second signal forces the stop: exit 1 (0 if already done)
    "replica_admin_shutdown",  # POST /admin/shutdown: exit 1
    "redis_kill_restart",      # SIGKILL redis-server, restart from its AOF on the same port
    "redis_freeze",            # SIGSTOP past the subscriber's health check, then SIGCONT
    "redis_gone",              # down past the reconnect budget: every replica exits 1
    "client_vanish",           # the next client in a ready check stops answering
    "server_silent",           # a dedicated server stops heartbeating for good
)


@dataclass(frozen=True)
class Fault:
    at: float      # seconds after traffic started
    kind: str
    target: int    # replica index, where it applies
    param: float   # a duration, where it applies


def plan(seed: int, duration_s: float, count: int, replicas: int, *, warmup_s: float = 3.0) -> list[Fault]:
    """`count` faults spread over the run; kinds come in shuffled rounds so that every kind
    appears (count >= len(KINDS)) and their numbers differ by at most one."""
    rng = random.Random(f"{seed}-faults")
    kinds: list[str] = []
    while len(kinds) < count:
        round_ = list(KINDS)
        rng.shuffle(round_)
        kinds += round_
    kinds = kinds[:count]
    end = max(warmup_s + 1.0, duration_s - 5.0)
    times = sorted(rng.uniform(warmup_s, end) for _ in range(count))
    faults = []
    for at, kind in zip(times, kinds):
        param = {
            "replica_double_sigterm": rng.uniform(0.05, 0.5),
            "redis_kill_restart": rng.uniform(0.1, 0.8),
            "redis_freeze": rng.uniform(3.5, 6.0),
            "redis_gone": rng.uniform(0.0, 2.0),  # extra time down after every replica gave up
        }.get(kind, 0.0)
        faults.append(Fault(round(at, 3), kind, rng.randrange(replicas), round(param, 3)))
    return faults


class Injector:
    def __init__(self, faults: list[Fault], *, supervisor: Supervisor, redis: DurableRedis, outage: OutageClock,
                 players: Players, fleet: ServerFleet, settings: ChaosSettings, stop: threading.Event) -> None:
        self._faults = faults
        self._supervisor = supervisor
        self._redis = redis
        self._outage = outage
        self._players = players
        self._fleet = fleet
        self._settings = settings
        self._stop = stop
        self.injected: Counter = Counter()
        self.skipped: Counter = Counter()
        self.problems: list[str] = []  # the system did not react as SPEC.md says
        self.log: list[dict] = []

    def run(self, started: float) -> None:
        for number, fault in enumerate(self._faults, 1):
            if self._stop.wait(max(0.0, started + fault.at - time.monotonic())):
                return
            if not self._supervisor.wait_all_ready(60):
                self.problems.append(f"fault {number}: replicas not all ready 60 s after the previous fault")
            done = self._inject(fault)
            (self.injected if done else self.skipped)[fault.kind] += 1
            self.log.append({"n": number, "at": round(time.monotonic() - started, 2), "kind": fault.kind,
                             "target": fault.target, "param": fault.param, "done": done})
            logger.info("fault %d/%d at %.1f s: %s%s", number, len(self._faults), time.monotonic() - started,
                        fault.kind, "" if done else " (skipped)")

    def _inject(self, fault: Fault) -> bool:
        kind = fault.kind
        if kind.startswith("replica_"):
            return self._replica_fault(fault)
        if kind == "redis_kill_restart":
            self._outage.begin()
            self._redis.kill()
            time.sleep(fault.param)
            self._redis.start()
            self._outage.end()
            return True
        if kind == "redis_freeze":
            self._outage.begin()
            self._redis.freeze()
            time.sleep(fault.param)
            self._redis.resume()
            self._outage.end()
            return True
        if kind == "redis_gone":
            return self._redis_gone(fault)
        if kind == "client_vanish":
            self._players.request_vanish()
            return True
        if kind == "server_silent":
            return self._fleet.silence_one() is not None
        raise ValueError(kind)

    def _replica_fault(self, fault: Fault) -> bool:
        slots = self._supervisor.slots
        slot = slots[fault.target % len(slots)]
        expected = {
            "replica_sigkill": (-signal.SIGKILL,),
            "replica_sigterm": (0,),
            "replica_double_sigterm": (0, 1),
            "replica_admin_shutdown": (1,),
        }[fault.kind]
        server = self._supervisor.expect_exit(slot, fault.kind, expected)
        if server is None:
            return False
        if fault.kind == "replica_sigkill":
            server.signal(signal.SIGKILL)
        elif fault.kind == "replica_sigterm":
            server.signal(signal.SIGTERM)
        elif fault.kind == "replica_double_sigterm":
            server.signal(signal.SIGTERM)
            time.sleep(fault.param)
            if server.process.poll() is None:
                server.signal(signal.SIGTERM)
        else:
            answer = call(server.admin_url, "POST", "/admin/shutdown", {"reason": "chaos"}, ADMIN_TOKEN)
            if answer.status != 202 or (answer.body or {}).get("exit_status") != 1:
                if server.process.poll() is None:
                    self.problems.append(f"admin shutdown answered {answer.status}: {answer.body}")
                self._supervisor.forget_expectation(slot)
                return False
        self._wait_exit(server, self._settings.shutdown_timeout_s + 10)
        return True

    def _wait_exit(self, server, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while server.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if server.process.poll() is None:
            self.problems.append(f"replica on port {server.port} still running {timeout:.0f} s after the fault")

    def _redis_gone(self, fault: Fault) -> bool:
        """Redis away for longer than the reconnect budget: each replica must exit 1 on its own
        (SPEC: Redis unreachable after the last reconnect attempt); restarted once it is back."""
        running = [s.server for s in self._supervisor.slots if s.server is not None]
        self._outage.begin()
        self._redis.kill()
        limit = (self._settings.reconnect_budget_s + 4 * 3.0 + self._settings.shutdown_timeout_s + 10)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and any(s.process.poll() is None for s in running):
            time.sleep(0.1)
        stuck = [s for s in running if s.process.poll() is None]
        if stuck:
            self.problems.append(f"redis_gone: {len(stuck)} replica(s) still running {limit:.0f} s after "
                                 "Redis went away (expected exit 1 after the last reconnect attempt)")
        time.sleep(fault.param)
        self._redis.start()
        self._outage.end()
        return True
