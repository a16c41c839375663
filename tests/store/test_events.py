import time

from mmserver.config import ModeConfig, ServersConfig
from tests.store.conftest import new_ticket
from tests.waiting import wait_until


def test_every_change_publishes_the_changed_ticket_ids_once(make_store, events):
    store = make_store({"duel": ModeConfig("duel", accept_timeout_s=5, ticket_ttl_s=60)},
                       ServersConfig(static=("10.0.0.1:1",)))
    a, ta = new_ticket(store, "a")
    b, tb = new_ticket(store, "b")
    assert wait_until(lambda: len(events.messages) >= 2)
    assert events.messages == [[a], [b]]

    store.read_ticket(a, ta)  # a read changes nothing: no event
    store.claim("duel", None, [((a,), (b,))], 5)
    assert wait_until(lambda: len(events.messages) >= 3)
    assert sorted(events.messages[2]) == sorted([a, b])  # one message for the whole claim

    store.accept(a, ta)
    assert wait_until(lambda: len(events.messages) >= 4)
    assert events.messages[3] == [a]
    store.accept(b, tb)  # the session moves on: both tickets change
    assert wait_until(lambda: len(events.messages) >= 5)
    assert sorted(events.messages[4]) == sorted([a, b])

    store.allocate(10)
    assert wait_until(lambda: len(events.messages) >= 6)
    assert sorted(events.messages[5]) == sorted([a, b])
    match_id = store.read_ticket(a, ta)["assignment"]["match_id"]
    store.finish_match(match_id)
    assert wait_until(lambda: len(events.messages) >= 7)
    assert sorted(events.messages[6]) == sorted([a, b])

    c, tc = new_ticket(store, "c")
    store.cancel_ticket(c, tc)
    assert wait_until(lambda: len(events.messages) >= 9)
    assert events.messages[7:9] == [[c], [c]]
    time.sleep(0.1)
    assert len(events.messages) == 9  # nothing else was published


def test_dissolving_a_session_publishes_every_ticket(make_store, events):
    store = make_store({"duel": ModeConfig("duel", accept_timeout_s=5)})
    a, ta = new_ticket(store, "a")
    b, tb = new_ticket(store, "b")
    store.claim("duel", None, [((a,), (b,))], 5)
    assert wait_until(lambda: len(events.messages) >= 3)
    store.decline(a, ta)
    assert wait_until(lambda: len(events.messages) >= 4)
    assert sorted(events.messages[3]) == sorted([a, b])


def test_deadline_expiry_publishes(make_store, events):
    store = make_store({"duel": ModeConfig("duel", ticket_ttl_s=0.1)})
    a, _ = new_ticket(store, "a")
    time.sleep(0.15)
    store.process_deadlines(100)
    assert wait_until(lambda: len(events.messages) >= 2)
    assert events.messages[1] == [a]
