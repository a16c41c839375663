import pytest

from tests.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real redis-server for the session; tests that kill or freeze Redis start their own."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server):
    """A client on a flushed database (decoded responses)."""
    client = redis_server.client(decode_responses=True)
    client.flushall()
    yield client
    client.flushall()
    client.close()
