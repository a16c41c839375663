"""The event log (SPEC "Events (v2)"): every transition appends its event in the script that
makes it, in order, with ids usable as cursors; the log is bounded by the [events] table."""
import re
from importlib import resources

from mmserver.config import EventsConfig, ModeConfig, ServersConfig
from mmserver.store import Store, keys
from mmserver.store.events import EVENT_TYPES, EventLog
from mmserver.store.scripts import LIB_MODULES, NAMES
from tests.store.conftest import new_ticket


def _types(log, **filters):
    return [(e["type"], e.get("ticket_id"), e.get("match_id")) for e in log.read(None, limit=1000, **filters).events]


def test_a_whole_match_in_order(make_store, redis_client):
    store = make_store({"duel": ModeConfig("duel", accept_timeout_s=5)}, ServersConfig(static=("10.0.0.1:1",)))
    log = EventLog(redis_client)
    a, ta = new_ticket(store, "a", mmr=1500)
    b, tb = new_ticket(store, "b", mmr=1510)
    [result] = store.claim("duel", None, [((a,), (b,))], 5)
    sid = result.session_id
    store.read_ticket(a, ta)  # a read is no transition
    store.accept(a, ta)
    store.accept(b, tb)
    store.allocate(10)
    store.finish_match(sid, "game over")
    assert _types(log) == [
        ("ticket.queued", a, None), ("ticket.queued", b, None),
        ("ticket.matched", a, sid), ("ticket.matched", b, sid),
        ("ticket.accepted", a, sid), ("ticket.accepted", b, sid), ("match.accepted", None, sid),
        ("ticket.assigned", a, sid), ("ticket.assigned", b, sid), ("match.assigned", None, sid),
        ("ticket.finished", a, sid), ("ticket.finished", b, sid), ("match.finished", None, sid),
    ]
    events = log.read(None, limit=1000).events
    assert events[0]["data"] == {"player_id": "a", "players": ["a"], "mmr": 1500}
    assigned = next(e for e in events if e["type"] == "match.assigned")
    assert assigned["data"]["teams"] == [["a"], ["b"]] and assigned["data"]["address"] == "10.0.0.1:1"
    assert events[-1]["data"] == {"reason": "game over"} and events[-1]["mode"] == "duel"
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids)
    assert [tuple(map(int, i.split("-"))) for i in ids] == sorted(tuple(map(int, i.split("-"))) for i in ids)


def test_ids_are_cursors_and_filters_select(make_store, redis_client):
    store = make_store()
    log = EventLog(redis_client)
    tickets = [new_ticket(store, f"p{i}") for i in range(5)]
    store.cancel_ticket(*tickets[0])
    first = log.read(None, limit=2)
    assert [e["ticket_id"] for e in first.events] == [tickets[0][0], tickets[1][0]]
    rest = log.read(first.next, limit=100)
    assert [e["type"] for e in rest.events] == ["ticket.queued"] * 3 + ["ticket.cancelled"]
    assert rest.events[-1]["data"] == {"reason": "cancelled by client"}
    assert log.read(rest.next, limit=100).events == []
    assert log.read(rest.next, limit=100).next == rest.next  # nothing new: the cursor stays
    only = log.read(None, limit=100, types={"ticket.cancelled"})
    assert [e["ticket_id"] for e in only.events] == [tickets[0][0]]
    assert log.read(None, limit=100, modes={"other"}).events == []


def test_dissolved_and_requeued_and_expired(make_store, redis_client):
    store = make_store({"duel": ModeConfig("duel", accept_timeout_s=5)})
    log = EventLog(redis_client)
    a, ta = new_ticket(store, "a")
    b, tb = new_ticket(store, "b")
    [result] = store.claim("duel", None, [((a,), (b,))], 5)
    store.decline(a, ta)
    assert _types(log)[4:] == [("ticket.cancelled", a, result.session_id), ("ticket.requeued", b, result.session_id),
                               ("match.dissolved", None, result.session_id)]
    events = log.read(None, limit=100).events
    assert events[-1]["data"] == {"reason": "declined by player"}


def test_the_log_is_bounded_by_length_and_age(redis_client):
    store = Store(redis_client, {"duel": ModeConfig("duel")}, ServersConfig(), retention_s=60,
                  events=EventsConfig(max_len=1000, max_age_s=3600))
    for i in range(3000):
        new_ticket(store, f"p{i}")
    # MAXLEN ~ trims whole blocks: a little over the bound, never unbounded.
    assert redis_client.xlen(keys.EVENT_LOG) < 1000 + 200
    # A claim appends one event per ticket untrimmed and trims once at its end: after it, the
    # bound holds again, however many it appended (a trim evicts at most 10,000 entries unless
    # told otherwise: 12,000 here).
    for i in range(3000, 12000):
        new_ticket(store, f"p{i}")
    ids = [t.ticket_id for t in store.read_queue("duel", None)]
    assert len(ids) == 12000
    results = store.claim("duel", None, [((ids[i],), (ids[i + 1],)) for i in range(0, 12000, 2)], 5)
    assert all(r.session_id for r in results)
    assert redis_client.xlen(keys.EVENT_LOG) < 1000 + 200
    aged = Store(redis_client, {"duel": ModeConfig("duel")}, ServersConfig(), retention_s=60,
                 events=EventsConfig(max_len=100_000, max_age_s=0.001))
    aged.process_deadlines(10)
    assert redis_client.xlen(keys.EVENT_LOG) < 200


def test_every_type_a_script_emits_is_listed():
    sources = "\n".join(resources.files("mmserver.store").joinpath("scripts", f"{n}.lua").read_text("utf-8")
                        for n in (*(f"lib/{m}" for m in LIB_MODULES), *NAMES))
    emitted = set(re.findall(r"emit(?:_untrimmed)?\('([a-z_]+\.[a-z_]+)'", sources))
    emitted |= {f"ticket.{s}" for s in ("finished", "cancelled", "expired")}  # make_terminal's 'ticket.' .. status
    assert emitted <= set(EVENT_TYPES), emitted - set(EVENT_TYPES)
    assert set(EVENT_TYPES) <= emitted, set(EVENT_TYPES) - emitted
