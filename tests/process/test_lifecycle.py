"""The real `mmserver` process: start, ready, every way of stopping, exit statuses."""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import pytest
import redis

from tests.process.harness import MMServer, children_of, redis_servers_for, request
from tests.redis_server import RedisServer
from tests.sentry_sink import SentrySink
from tests.waiting import wait_until


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.resume() if server.process and server.process.poll() is None else None
    server.stop()


def last_line(server: MMServer) -> str:
    lines = [line for line in server.lines if line.strip()]
    assert lines, "no output"
    return lines[-1]


def create_ticket(server: MMServer, player: str = "p1") -> dict:
    answer = server.post("/v1/tickets", {"player_id": player, "mode": "duel", "mmr": 1500})
    assert answer.status == 201, answer.body
    return answer.json()


def test_sigterm_drains_and_exits_0(tmp_path, redis_server):
    server = MMServer(tmp_path, redis_url=redis_server.url).start().wait_ready()
    assert server.get("/healthz").status == 200
    # The status request travels on the admin listener: it is not the public API's work. (The
    # public worker counts /healthz out just after its answer is sent: a loaded machine may
    # show it for a moment, so the count is awaited; an admin request counted here never would.)
    assert wait_until(lambda: server.admin("/admin/status").json()["workers"]["http"]["in_flight"] == 0, 5)
    server.signal(signal.SIGTERM)
    assert server.wait(20) == 0
    assert "exit status 0" in last_line(server)
    assert "SIGTERM" in last_line(server)


def json_records(server: MMServer) -> list[dict]:
    """Every line of a MMSERVER_LOG_FORMAT=json run as a record (a stray line fails)."""
    return [json.loads(line) for line in server.lines if line.strip()]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_clean_stop_logs_nothing_at_warning(tmp_path, signum):
    """Status 0 is the supervisor's own stop: the whole run, the embedded Redis's start and stop
    included, logs at INFO, so alerts on WARNING never fire for a routine restart."""
    server = MMServer(tmp_path, env={"MMSERVER_LOG_FORMAT": "json", "MMSERVER_DRAIN_DELAY_S": "0.2"})
    server.start().wait_ready(45)
    create_ticket(server)
    server.signal(signum)
    assert server.wait(30) == 0
    records = json_records(server)
    # waitress's own queue-depth warning can appear on a loaded machine (a request waited for a
    # worker thread): load, not the stop path, so it is left out here.
    assert [(r["level"], r["message"]) for r in records
            if r["level"] != "INFO" and not r["message"].startswith("all HTTP workers busy")] == []
    messages = [r["message"] for r in records]
    assert f"stopping with exit status 0: {signum.name} received" in messages
    assert messages[-1] == f"exit status 0: {signum.name} received"


def test_a_stop_for_a_restart_keeps_warning_and_error(tmp_path, redis_server):
    server = MMServer(tmp_path, redis_url=redis_server.url, env={"MMSERVER_LOG_FORMAT": "json"})
    server.start().wait_ready()
    assert server.admin("/admin/shutdown", "POST", {"reason": "rollout"}).status == 202
    assert server.wait(30) == 1
    records = json_records(server)
    levels = {r["message"]: r["level"] for r in records}
    assert levels["stopping with exit status 1: admin shutdown: rollout"] == "WARNING"
    assert (records[-1]["level"], records[-1]["message"]) == ("ERROR", "exit status 1: admin shutdown: rollout")


def test_admin_shutdown_answers_202_finishes_in_flight_and_exits_1(tmp_path):
    """Embedded Redis, a Sentry sink, a long-poll in flight: the whole sequence of SPEC.md."""
    with SentrySink() as sink:
        server = MMServer(tmp_path, env={"MMSERVER_SENTRY_DSN": sink.dsn}).start().wait_ready(45)
        ticket = create_ticket(server)
        assert server.admin("/admin/status", token="").status == 401
        assert server.admin("/admin/status", token="wrong-token").status == 401
        assert server.admin("/admin/shutdown", "POST", {"reason": "x"}, token="test-admin-tokeN").status == 401
        assert server.process.poll() is None  # none of the refused calls stopped it

        poll: dict = {}

        def long_poll() -> None:
            answer = request(f"{server.url}/v1/tickets/{ticket['ticket_id']}?wait=20&version={ticket['version']}",
                             token=ticket["token"], timeout=30)
            poll["status"], poll["body"], poll["at"] = answer.status, answer.json(), time.monotonic()

        poller = threading.Thread(target=long_poll)
        poller.start()
        time.sleep(0.5)  # the long-poll is now waiting inside the server
        started = time.monotonic()
        answer = server.admin("/admin/shutdown", "POST", {"reason": "config rollout"})
        assert answer.status == 202
        assert answer.json() == {"state": "stopping", "reason": "admin shutdown: config rollout", "exit_status": 1}
        assert server.wait(30) == 1
        elapsed = time.monotonic() - started
        poller.join(10)
        assert poll["status"] == 200 and poll["body"]["ticket_id"] == ticket["ticket_id"]
        assert poll["at"] - started < 5, "a waiting long-poll answers at once when the drain starts"
        messages = [json.dumps(event) for event in sink.events()]
        assert any("config rollout" in message for message in messages), messages
        assert "exit status 1" in last_line(server) and "config rollout" in last_line(server)
        assert children_of(server.process.pid) == []
        assert redis_servers_for(tmp_path / "data") == [], "the embedded redis-server was left running"
        print(f"admin shutdown to exit: {elapsed:.3f} s")


def test_double_sigterm_forces_a_prompt_exit_1(tmp_path, redis_server):
    server = MMServer(tmp_path, redis_url=redis_server.url, env={"MMSERVER_DRAIN_DELAY_S": "10"})
    server.start().wait_ready()
    server.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert server.get("/readyz").status == 503  # draining: still serving, not ready
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait(10) == 1
    assert time.monotonic() - started < 3
    assert "forced exit" in server.output()


def test_redis_lost_for_good_turns_unready_then_exits_1(tmp_path, own_redis):
    server = MMServer(tmp_path, redis_url=own_redis.url, env={
        "MMSERVER_REDIS_RECONNECT_ATTEMPTS": "4", "MMSERVER_REDIS_BACKOFF_INITIAL_MS": "300",
        "MMSERVER_REDIS_BACKOFF_MAX_MS": "600"}).start().wait_ready()
    own_redis.kill()
    deadline = time.monotonic() + 10
    while server.get("/readyz").status != 503:
        assert time.monotonic() < deadline, "readiness never turned 503"
        time.sleep(0.05)
    assert server.get("/healthz").status == 200
    assert server.wait(30) == 1
    assert "redis unreachable" in last_line(server)


RECONNECT_ATTEMPTS = 4


def redis_lost_stop(server: MMServer, kill_redis) -> list[dict]:
    """Kill Redis under a busy replica and keep calling it (tickets, long-poll, metrics, status)
    until the subscriber gives up; return the JSON log records of the whole run."""
    ticket = create_ticket(server)
    kill_redis()
    while server.process.poll() is None:
        for call in (lambda: server.post("/v1/tickets", {"player_id": "p2", "mode": "duel", "mmr": 1500}),
                     lambda: server.get(f"/v1/tickets/{ticket['ticket_id']}?wait=1&version=1",
                                        token=ticket["token"]),
                     lambda: request(server.admin_url + "/metrics"),
                     lambda: server.admin("/admin/status"),
                     lambda: server.get("/readyz")):
            try:
                call()
            except OSError:
                pass  # the listeners close once the stop begins
        time.sleep(0.05)
    assert server.wait(30) == 1
    return json_records(server)


def assert_one_line_per_event(server: MMServer, records: list[dict]) -> None:
    assert sum(line.count("Traceback") for line in server.lines) == 0, server.output()
    assert not [r for r in records if "exc" in r], "a traceback for an expected Redis outage"
    errors = [r["message"] for r in records if r["level"] in ("ERROR", "CRITICAL")]
    assert errors == ["exit status 1: redis unreachable"], errors
    assert records[-1]["message"] == "exit status 1: redis unreachable"
    warnings = [r["message"] for r in records if r["level"] == "WARNING"]
    # One per reconnect attempt and the give-up, one per job (ticks fail 20+ times here), one
    # for the failing requests (at most one per 10 s), the stop's "stopping" line and its
    # replica-record step, (embedded) Redis's exit status, and one to spare for a race.
    assert len(warnings) <= RECONNECT_ATTEMPTS + 8, "\n".join(warnings)
    assert any(m.startswith("job matchmaker failed (1 in a row): RedisUnavailable") for m in warnings), warnings
    assert any("giving up" in m for m in warnings)


def test_a_redis_lost_stop_is_a_few_lines_without_traceback(tmp_path, own_redis):
    server = MMServer(tmp_path, redis_url=own_redis.url, env={
        "MMSERVER_LOG_FORMAT": "json", "MMSERVER_TICK_INTERVAL_MS": "50",
        "MMSERVER_REDIS_RECONNECT_ATTEMPTS": str(RECONNECT_ATTEMPTS),
        "MMSERVER_REDIS_BACKOFF_INITIAL_MS": "300", "MMSERVER_REDIS_BACKOFF_MAX_MS": "600"})
    records = redis_lost_stop(server.start().wait_ready(), own_redis.kill)
    assert_one_line_per_event(server, records)


def test_an_embedded_redis_lost_stop_is_a_few_lines_without_traceback(tmp_path):
    server = MMServer(tmp_path, env={
        "MMSERVER_LOG_FORMAT": "json", "MMSERVER_TICK_INTERVAL_MS": "50",
        "MMSERVER_REDIS_RECONNECT_ATTEMPTS": str(RECONNECT_ATTEMPTS),
        "MMSERVER_REDIS_BACKOFF_INITIAL_MS": "300", "MMSERVER_REDIS_BACKOFF_MAX_MS": "600"})
    server.start().wait_ready(45)
    (redis_pid,) = redis_servers_for(tmp_path / "data")
    records = redis_lost_stop(server, lambda: os.kill(redis_pid, signal.SIGKILL))
    assert_one_line_per_event(server, records)
    assert any(r["message"] == "embedded Redis had already exited with status -9" for r in records)


def test_redis_frozen_is_detected_and_the_replica_restarts(tmp_path, own_redis):
    server = MMServer(tmp_path, redis_url=own_redis.url, env={
        "MMSERVER_REDIS_RECONNECT_ATTEMPTS": "2", "MMSERVER_REDIS_BACKOFF_INITIAL_MS": "200",
        "MMSERVER_REDIS_BACKOFF_MAX_MS": "400", "MMSERVER_SHUTDOWN_TIMEOUT_S": "5"}).start().wait_ready()
    started = time.monotonic()
    own_redis.freeze()
    try:
        status = server.wait(40)
    finally:
        own_redis.resume()
    assert status == 1
    assert "redis unreachable" in last_line(server)
    assert "Traceback" not in server.output()
    # A hung tick makes APScheduler skip a run every 100 ms: said once per job, not each time.
    skipped = [line for line in server.lines if "maximum number of running instances" in line]
    assert len(skipped) <= 2, "\n".join(skipped)
    print(f"frozen Redis to exit: {time.monotonic() - started:.1f} s")


def refusal(server: MMServer) -> str:
    """The one line a refused start printed (exit 2)."""
    lines = [line for line in server.lines if line.strip()]
    assert len(lines) == 1, server.output()
    return lines[0]


@pytest.mark.parametrize(("setting", "role"), [("MMSERVER_LISTEN", "public API"),
                                               ("MMSERVER_ADMIN_LISTEN", "control plane")])
def test_a_port_in_use_is_refused_with_exit_2_naming_the_listener(tmp_path, redis_server, setting, role):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = MMServer(tmp_path, redis_url=redis_server.url, env={setting: f"127.0.0.1:{port}"})
        assert server.start().wait(30) == 2
    assert refusal(server).endswith(
        f" ERROR mmserver.lifecycle: cannot listen on 127.0.0.1:{port} ({setting}, {role}): Address already in use")


def test_an_address_nobody_has_is_refused_with_the_reason(tmp_path, redis_server):
    # 192.0.2.0/24 is TEST-NET-1: never an address of this host. (The control plane, which may
    # listen beyond loopback with a token; the public API would need [auth] first.)
    server = MMServer(tmp_path, redis_url=redis_server.url, env={"MMSERVER_ADMIN_LISTEN": "192.0.2.1:8081"})
    assert server.start().wait(30) == 2
    assert refusal(server).endswith(
        "cannot listen on 192.0.2.1:8081 (MMSERVER_ADMIN_LISTEN, control plane): Cannot assign requested address")


def test_a_second_mmserver_on_the_same_data_dir_is_told_so_not_that_its_ports_are_taken(tmp_path):
    """A second `make run` in the same directory: same data dir, same ports."""
    first = MMServer(tmp_path).start().wait_ready(45)
    try:
        second = MMServer(tmp_path)
        second.port, second.admin_port = first.port, first.admin_port
        second.env.update(MMSERVER_LISTEN=first.env["MMSERVER_LISTEN"],
                          MMSERVER_ADMIN_LISTEN=first.env["MMSERVER_ADMIN_LISTEN"])
        assert second.start().wait(30) == 2
        data_dir = tmp_path / "data"
        assert refusal(second).endswith(
            f" ERROR mmserver.lifecycle: data directory {data_dir} (MMSERVER_DATA_DIR) is in use by another "
            f"mmserver (pid {first.process.pid}): stop that one, or give this one another MMSERVER_DATA_DIR")
        assert first.get("/readyz").status == 200  # the refused start disturbed nothing
    finally:
        first.signal(signal.SIGTERM)
        assert first.wait(30) == 0


def test_a_data_dir_that_cannot_be_created_is_refused_with_exit_2(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    server = MMServer(tmp_path, env={"MMSERVER_DATA_DIR": str(tmp_path / "file" / "data")})
    assert server.start().wait(30) == 2
    assert refusal(server).endswith(
        f"MMSERVER_DATA_DIR: cannot use {tmp_path / 'file' / 'data'}: Not a directory")


def test_systemd_notifications_on_a_real_datagram_socket(tmp_path, redis_server):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(0.2)
        server = MMServer(tmp_path, redis_url=redis_server.url,
                          env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
        server.start().wait_ready()
        messages: list[str] = []

        def collect(until: float) -> None:
            while time.monotonic() < until:
                try:
                    messages.append(sock.recv(4096).decode())
                except socket.timeout:
                    pass

        collect(time.monotonic() + 1.5)
        server.signal(signal.SIGTERM)
        assert server.wait(20) == 0
        collect(time.monotonic() + 0.5)
    fields = [field for message in messages for field in message.split("\n")]
    assert "READY=1" in fields
    assert fields.count("WATCHDOG=1") >= 2, messages
    assert "STOPPING=1" in fields
    assert any(field.startswith("STATUS=") for field in fields)
    assert fields.index("READY=1") < fields.index("STOPPING=1")


def test_embedded_redis_keeps_tickets_across_restarts_and_is_stopped(tmp_path):
    first = MMServer(tmp_path).start().wait_ready(45)
    ticket = create_ticket(first)
    assert len(redis_servers_for(tmp_path / "data")) == 1
    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0
    assert redis_servers_for(tmp_path / "data") == []

    second = MMServer(tmp_path).start().wait_ready(45)
    try:
        answer = second.get(f"/v1/tickets/{ticket['ticket_id']}", token=ticket["token"])
        assert answer.status == 200 and answer.json()["player_id"] == "p1"
    finally:
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0


def test_sigkilled_replica_leaves_nothing_that_blocks_the_next_start(tmp_path):
    first = MMServer(tmp_path).start().wait_ready(45)
    ticket = create_ticket(first)
    first.kill()
    second = MMServer(tmp_path).start().wait_ready(45)
    try:
        assert second.get(f"/v1/tickets/{ticket['ticket_id']}", token=ticket["token"]).status == 200
        assert len(redis_servers_for(tmp_path / "data")) == 1
    finally:
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0
    assert redis_servers_for(tmp_path / "data") == []


def test_the_database_of_the_url_is_the_one_used(tmp_path, redis_server, redis_client):
    server = MMServer(tmp_path, redis_url=redis_server.url.rpartition("/")[0] + "/3").start().wait_ready()
    try:
        create_ticket(server)
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0
    assert redis_client.dbsize() == 0
    database_3 = redis.Redis(host="127.0.0.1", port=redis_server.port, db=3)
    try:
        assert database_3.dbsize() > 0
        database_3.flushdb()
    finally:
        database_3.close()


def _bad_file(tmp_path, name: str, content: bytes) -> dict:
    path = tmp_path / name
    path.write_bytes(content)
    if name == "admin.token":  # the harness's MMSERVER_ADMIN_TOKEN would win over the file
        return {"MMSERVER_ADMIN_TOKEN": "", "MMSERVER_ADMIN_TOKEN_FILE": str(path)}
    return {"MMSERVER_CONFIG": str(path)}


# (environment, the setting the line names, what it says). The first ones are refused while the
# configuration is read (on stderr), the URL options when the Redis client is built (in the log).
BAD_SETTINGS = {
    "not utf-8": (lambda tmp: _bad_file(tmp, "mm.toml", b"[modes.duel]\nteams = 2 # caf\xe9\n"),
                  "MMSERVER_CONFIG", "is not UTF-8 text"),
    "huge integer": (lambda tmp: _bad_file(tmp, "mm.toml", b"[modes.duel]\nmmr_window = 1" + b"0" * 400),
                     "modes.duel.mmr_window", "expected a number, got an integer of 401 digits"),
    "ten years": (lambda tmp: _bad_file(tmp, "mm.toml", b"[modes.duel]\nticket_ttl_s = 1e16\n"),
                  "modes.duel.ticket_ttl_s", "must be at most 315,360,000 s (10 years)"),
    "drain delay": (lambda tmp: {"MMSERVER_DRAIN_DELAY_S": "1e10"}, "MMSERVER_DRAIN_DELAY_S", "at most"),
    "ipv6": (lambda tmp: {"MMSERVER_REDIS_URL": "redis://[::1:6379"}, "MMSERVER_REDIS_URL", "Invalid IPv6 URL"),
    "database": (lambda tmp: {"MMSERVER_REDIS_URL": "redis://127.0.0.1:6379/3x"}, "MMSERVER_REDIS_URL",
                 "the database in 'redis://127.0.0.1:6379/3x' must be a number"),
    "sentry": (lambda tmp: {"MMSERVER_SENTRY_DSN": "not-a-dsn"}, "MMSERVER_SENTRY_DSN", "not a Sentry DSN"),
    "two-line token": (lambda tmp: _bad_file(tmp, "admin.token", b"one-token\nanother-token\n"),
                       "MMSERVER_ADMIN_TOKEN_FILE", "printable ASCII without spaces"),
    "unknown option": (lambda tmp: {"?": "ssl_ca_cert=/typo.pem"}, "MMSERVER_REDIS_URL", "bad option"),
    "nan timeout": (lambda tmp: {"?": "socket_timeout=nan"}, "MMSERVER_REDIS_URL", "socket_timeout"),
    "client name": (lambda tmp: {"?": "client_name=my%20replica"}, "MMSERVER_REDIS_URL", "client_name"),
}


def _fifo(tmp_path) -> str:
    path = tmp_path / "mm.fifo"
    os.mkfifo(path)  # nobody ever writes: an open for reading without O_NONBLOCK blocks for good
    return str(path)


def _big_file(tmp_path) -> str:
    path = tmp_path / "big.toml"
    path.write_bytes(b"[modes.duel]\n" + b"#" * (1024 * 1024) + b"\n")  # a comment: valid TOML
    return str(path)


@pytest.mark.parametrize(("make_path", "says"), [
    (lambda tmp: "/dev/zero", "/dev/zero is not a regular file"),
    (_fifo, "mm.fifo is not a regular file"),
    (lambda tmp: str(tmp), " is not a regular file"),
    (_big_file, "big.toml is larger than 1 MiB"),
], ids=["dev-zero", "fifo", "directory", "over-1-MiB"])
def test_a_config_that_is_not_a_small_regular_file_is_refused_at_once(tmp_path, make_path, says):
    """/dev/zero was read until memory ran out, and a FIFO blocked the start at its open."""
    server = MMServer(tmp_path, env={"MMSERVER_CONFIG": make_path(tmp_path)})
    started = time.monotonic()
    assert server.start().wait(15) == 2
    assert time.monotonic() - started < 10
    line = refusal(server)
    assert line.startswith("mmserver: error: MMSERVER_CONFIG: ") and line.endswith(says), line


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
@pytest.mark.parametrize("setting", ["MMSERVER_ADMIN_TOKEN_FILE", "servers.token_file", "auth.backend_keys_file"])
def test_a_token_or_key_file_that_is_not_a_regular_file_is_refused_at_once(tmp_path, setting, special):
    path = "/dev/zero" if special == "/dev/zero" else _fifo(tmp_path)
    if setting == "MMSERVER_ADMIN_TOKEN_FILE":
        env = {"MMSERVER_ADMIN_TOKEN": "", "MMSERVER_ADMIN_TOKEN_FILE": path}
    else:
        table, key = setting.split(".")
        config = tmp_path / "mm.toml"
        config.write_text(f"[modes.duel]\n[{table}]\n{key} = '{path}'\n")
        env = {"MMSERVER_CONFIG": str(config)}
    server = MMServer(tmp_path, env=env)
    assert server.start().wait(15) == 2
    line = refusal(server)
    assert setting in line and line.endswith(f"{path} is not a regular file"), line


@pytest.mark.parametrize("case", list(BAD_SETTINGS))
def test_bad_settings_are_refused_with_exit_2_and_one_line_naming_them(tmp_path, redis_server, case):
    make_env, setting, says = BAD_SETTINGS[case]
    env = make_env(tmp_path)
    query = env.pop("?", None)
    redis_url = redis_server.url + (f"?{query}" if query else "")
    server = MMServer(tmp_path, redis_url=redis_url, env=env)
    assert server.start().wait(30) == 2
    line = refusal(server)
    assert setting in line and says in line, line
    if query is None:  # read with the configuration: nothing was started, not even logging
        assert line.startswith("mmserver: error: "), line
