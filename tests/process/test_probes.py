"""Probes and the control plane answer while the public workers are all busy and Redis is frozen.

The Kubernetes liveness probe times out after a few seconds. If /healthz waited behind public
requests (long-polls hold workers for up to 30 s, a call to a frozen Redis for its socket
timeout), a slow Redis would fail the liveness probe of every replica at once and Kubernetes
would restart them together. The control-plane listener has a worker pool of its own, and
/admin/status bounds its Redis reads; /healthz and /readyz, on either listener, run on a pool of
their own that not even admin calls held by the frozen Redis can fill.
"""
from __future__ import annotations

import threading
import time

import pytest

from mmserver.replica import ADMIN_THREADS
from tests.process.harness import MMServer, request
from tests.redis_server import RedisServer
from tests.waiting import wait_until

THREADS = 4  # the smallest MMSERVER_HTTP_THREADS
LONG_POLLS = 2  # MMSERVER_MAX_LONGPOLLS: leaves 2 of the 4 workers for other requests
PROBE_BOUND_S = 1.0


@pytest.fixture
def frozen_redis(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    if server.running:
        server.resume()
    server.stop()


def hold(url: str, **kwargs) -> None:
    """One request that keeps a public worker busy; its own outcome does not matter (the server
    is killed at the end of the test, cutting it)."""
    try:
        request(url, **kwargs)
    except OSError:
        pass


def timed(url: str, timeout: float = 10.0, token: str | None = None) -> tuple[float, int | None, dict | None]:
    """(seconds, status, JSON body) of one GET on a fresh connection; status None on timeout."""
    started = time.monotonic()
    try:
        answer = request(url, timeout=timeout, token=token)
    except OSError:  # socket timeout: no answer within `timeout`
        return time.monotonic() - started, None, None
    elapsed = time.monotonic() - started
    try:
        body = answer.json()
    except ValueError:
        body = None
    return elapsed, answer.status, body


def sample(server: MMServer, urls: dict[str, str], seconds: float) -> tuple[dict, dict, list]:
    """Call each URL in turn for `seconds`: (latencies, statuses, /admin/status store errors)
    by name; every latency is checked against PROBE_BOUND_S."""
    latencies: dict[str, list[float]] = {name: [] for name in urls}
    statuses: dict[str, set] = {name: set() for name in urls}
    store_errors = []
    deadline = time.monotonic() + seconds  # well within the frozen Redis' effect on the workers
    while time.monotonic() < deadline:
        for name, url in urls.items():
            token = server.admin_token if "/admin/" in url else None
            elapsed, status, body = timed(url, timeout=5, token=token)
            latencies[name].append(elapsed)
            statuses[name].add(status)
            if name == "/admin/status" and body is not None:
                store_errors.append(body.get("store_error"))
    for name, values in latencies.items():
        print(f"{name}, {len(values)} calls: "
              f"max {max(values) * 1000:.0f} ms, median {sorted(values)[len(values) // 2] * 1000:.0f} ms")
        assert max(values) < PROBE_BOUND_S, (name, values)
    return latencies, statuses, store_errors


def test_probes_and_admin_status_answer_within_1s_with_every_public_worker_busy_and_redis_frozen(
        tmp_path, frozen_redis):
    server = MMServer(tmp_path, redis_url=frozen_redis.url, env={
        "MMSERVER_HTTP_THREADS": str(THREADS),
        "MMSERVER_MAX_LONGPOLLS": str(LONG_POLLS),
    })
    server.start().wait_ready()
    busy: list[threading.Thread] = []
    try:
        # Long-polls hold LONG_POLLS workers, waiting for a change that never comes.
        for n in range(LONG_POLLS):
            ticket = server.post("/v1/tickets", {"player_id": f"p{n}", "mode": "duel", "mmr": 1500}).json()
            url = f"{server.url}/v1/tickets/{ticket['ticket_id']}?wait=25&version={ticket['version']}"
            busy.append(threading.Thread(target=hold, args=(url,), kwargs={"token": ticket["token"], "timeout": 40},
                                         name=f"long-poll-{n}", daemon=True))
            busy[-1].start()
        assert wait_until(lambda: server.admin("/admin/status").json()["workers"]["http"]["long_polls"] == LONG_POLLS,
                          10), "the long-polls never started waiting"

        frozen_redis.freeze()
        # Every other public worker blocks on the frozen Redis, and more requests queue behind.
        for n in range(THREADS * 2):
            busy.append(threading.Thread(
                target=hold, args=(f"{server.url}/v1/tickets",), daemon=True, name=f"slow-{n}",
                kwargs={"method": "POST", "body": {"player_id": f"slow{n}", "mode": "duel", "mmr": 1500},
                        "timeout": 40}))
            busy[-1].start()
        assert wait_until(lambda: server.admin("/admin/status", timeout=5).json()["workers"]["http"]["in_flight"]
                          >= THREADS * 2, 10), "the slow requests never reached the server"

        # The load is real: a public request that needs no Redis waits behind it.
        public_elapsed, public_status, _ = timed(server.url + "/v1/openapi.json", timeout=PROBE_BOUND_S)
        assert public_status is None, f"public /v1/openapi.json answered in {public_elapsed:.3f} s: workers not all busy"

        urls = {"/healthz": server.admin_url + "/healthz", "/readyz": server.admin_url + "/readyz",
                "/admin/status": server.admin_url + "/admin/status",
                "public /healthz": server.url + "/healthz", "public /readyz": server.url + "/readyz"}
        latencies, statuses, store_errors = sample(server, urls, 4.0)
        assert statuses["/admin/status"] == {200}
        # Redis is frozen: the status says so instead of waiting for it
        assert store_errors and all(error for error in store_errors), store_errors
        # and the public workers were still held the whole time
        assert server.admin("/admin/status").json()["workers"]["http"]["in_flight"] >= THREADS

        # Every admin worker held too, by admin calls that wait on the frozen Redis (an operator
        # console refreshing): the probes still answer, on both listeners.
        for n in range(ADMIN_THREADS * 2):
            busy.append(threading.Thread(
                target=hold, args=(f"{server.admin_url}/admin/matches",), daemon=True, name=f"admin-{n}",
                kwargs={"token": server.admin_token, "timeout": 40}))
            busy[-1].start()
        time.sleep(0.5)
        elapsed, status, _ = timed(server.admin_url + "/admin/status", timeout=PROBE_BOUND_S, token=server.admin_token)
        assert status is None, f"/admin/status answered in {elapsed:.3f} s: admin workers not all busy"
        probes = {path: url for path, url in urls.items() if not path.startswith("/admin")}
        more_latencies, more_statuses, _ = sample(server, probes, 3.0)
        # and every admin worker was still held
        elapsed, status, _ = timed(server.admin_url + "/admin/status", timeout=PROBE_BOUND_S, token=server.admin_token)
        assert status is None, f"/admin/status answered in {elapsed:.3f} s"
        for path, values in more_latencies.items():
            print(f"{path} with every admin worker held too: max {max(values) * 1000:.0f} ms")
            assert max(values) < PROBE_BOUND_S, (path, values)
        for found in (statuses, more_statuses):
            assert found["/healthz"] == found["public /healthz"] == {200}
            assert found["/readyz"] | found["public /readyz"] <= {200, 503}
    finally:
        frozen_redis.resume()
        server.kill()


def test_a_redis_that_refuses_writes_makes_the_replica_unready_until_it_takes_them_again(tmp_path):
    # A demoted master still answers, so the subscriber stays subscribed; only a write shows
    # that every ticket creation and tick now fails (READONLY).
    redis = RedisServer(tmp_path / "redis").start()
    server = MMServer(tmp_path / "mm", redis_url=redis.url).start()
    try:
        server.wait_ready()
        client = redis.client()
        client.execute_command("REPLICAOF", "127.0.0.1", "1")  # a master that is not there
        assert wait_until(lambda: server.get("/readyz").status == 503, 10), "still ready"
        assert server.admin("/admin/status").json()["readiness"] == "redis refuses writes"
        assert server.get("/healthz").status == 200
        assert server.post("/v1/tickets", {"player_id": "p1", "mode": "duel", "mmr": 1500}).status == 503
        client.execute_command("REPLICAOF", "NO", "ONE")
        assert wait_until(lambda: server.get("/readyz").status == 200, 10), "never ready again"
        assert server.post("/v1/tickets", {"player_id": "p1", "mode": "duel", "mmr": 1500}).status == 201
    finally:
        server.kill()
        redis.stop()
