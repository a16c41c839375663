import threading

import pytest

from mmserver.config import ModeConfig, ServersConfig
from mmserver.store import Store


@pytest.fixture
def make_store(redis_client):
    """Store factory on the flushed test database; small timeouts keep deadlines fast."""

    def make(modes=None, servers=None, retention_s=60, client=None):
        modes = modes or {"duel": ModeConfig("duel", accept_timeout_s=5)}
        servers = servers or ServersConfig()
        return Store(client or redis_client, modes, servers, retention_s=retention_s)

    return make


@pytest.fixture
def store(make_store):
    return make_store()


def new_ticket(store, player, mode="duel", mmr=1500, region=None, party=()):
    view, token = store.create_ticket(player_id=player, mode=mode, mmr=mmr, region=region,
                                      party=list(party))
    return view["ticket_id"], token



class EventLog:
    """Collects every mm:events message on a real subscription."""

    def __init__(self, client):
        self.messages: list[list[str]] = []
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe("mm:events")
        self._pubsub.get_message(timeout=1)  # the subscribe confirmation
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-events", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.05)
            if message:
                self.messages.append(message["data"].split(","))

    def ids(self) -> list[str]:
        return [i for m in self.messages for i in m]

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self._pubsub.close()


@pytest.fixture
def events(redis_server):
    client = redis_server.client(decode_responses=True)
    log = EventLog(client)
    yield log
    log.close()
    client.close()
