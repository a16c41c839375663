import pytest

from tests.process.harness import MMServer
from tests.redis_server import RedisServer


@pytest.fixture(autouse=True)
def no_replica_outlives_its_test():
    """Kills every replica a test started and left running, even when the test failed: one left
    behind would match, expire and trim on the session's shared Redis under later tests.
    Replicas of module-scoped fixtures started before this runs, so they are left alone."""
    before = len(MMServer.started)
    yield
    for server in MMServer.started[before:]:
        server.kill()
    del MMServer.started[before:]


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
