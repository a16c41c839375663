"""GET /v1/events on a real Store: backend keys only, cursors, filters, long-poll, bad queries."""
from __future__ import annotations

import threading
import time

import jsonschema
import pytest

from mmserver.http.waiters import ANY_CHANGE
from mmserver.store.events import LAST_STREAM_ID
from tests.api.conftest import bearer, openapi
from tests.api.test_auth import BACKEND_KEY, make_client, player_token, post
from tests.waiting import PROMPTLY_S, wait_until

BACKEND = bearer(BACKEND_KEY)


@pytest.fixture
def api(store, waiters, readiness, observed_statuses):
    return make_client(store, waiters, readiness, observed_statuses)


def page_schema() -> dict:
    document = openapi()
    return {**document["components"]["schemas"]["EventPage"], "components": document["components"]}


def read(api, query="", headers=BACKEND):
    result = api.simulate_get("/v1/events", query_string=query, headers=headers)
    if result.status_code == 200:
        jsonschema.validate(result.json, page_schema())
    return result


def test_a_backend_follows_tickets_from_the_log(api):
    first = post(api, {"player_id": "ann", "mode": "duel", "mmr": 1500}, BACKEND_KEY).json
    second = post(api, {"player_id": "bob", "mode": "squad", "mmr": 1400}, BACKEND_KEY).json
    api.simulate_delete(f"/v1/tickets/{first['ticket_id']}", headers=BACKEND)
    page = read(api).json
    assert [(e["type"], e["ticket_id"]) for e in page["events"]] == [
        ("ticket.queued", first["ticket_id"]), ("ticket.queued", second["ticket_id"]),
        ("ticket.cancelled", first["ticket_id"])]
    assert page["events"][0]["data"] == {"player_id": "ann", "players": ["ann"], "mmr": 1500}
    assert page["events"][0]["mode"] == "duel" and abs(page["events"][0]["at"] - time.time()) < 60
    assert page["next"] == page["events"][-1]["id"]
    # Paging: a cursor continues exactly after the event it names.
    one = read(api, "limit=1").json
    assert [e["id"] for e in one["events"]] == [page["events"][0]["id"]]
    rest = read(api, f"after={one['next']}").json
    assert [e["id"] for e in rest["events"]] == [e["id"] for e in page["events"][1:]]
    assert read(api, f"after={page['next']}").json == {"events": [], "next": page["next"]}
    # Filters.
    assert [e["type"] for e in read(api, "type=ticket.cancelled").json["events"]] == ["ticket.cancelled"]
    assert [e["ticket_id"] for e in read(api, "mode=squad").json["events"]] == [second["ticket_id"]]
    both = read(api, "type=ticket.queued,ticket.cancelled&mode=duel").json["events"]
    assert [e["type"] for e in both] == ["ticket.queued", "ticket.cancelled"]


def test_only_backend_keys_read_events(api):
    assert read(api, headers={}).status_code == 401
    assert read(api, headers=bearer("not-a-key")).status_code == 401
    assert read(api, headers=bearer(player_token("alice"))).status_code == 403
    assert read(api, headers=bearer("server-secret")).status_code == 403


@pytest.mark.parametrize("query", [
    "after=abc", "after=1-2-3", "limit=0", "limit=1001", "limit=x", "wait=31", "wait=-1", "wait=nan",
    "type=ticket.nope", "mode=nope", "colour=red", "after=1-0&after=2-0", "type=" + "x" * 5000,
    # Ids Redis refuses: a part past 64 bits, digits that are not ASCII.
    "after=18446744073709551616-0", "after=0-99999999999999999999", "after=%D9%A3-%D9%A3",
    "limit=%C2%B2", "limit=" + "1" * 5000,  # digits int() refuses: not ASCII, past its 4,300
])
def test_bad_queries_are_400(api, query):
    result = read(api, query)
    assert result.status_code == 400, result.text
    assert "Traceback" not in result.text and len(result.text) < 2000


def test_the_last_possible_id_is_a_cursor_with_nothing_after_it(api):
    post(api, {"player_id": "p1", "mode": "duel", "mmr": 1}, BACKEND_KEY)
    result = read(api, f"after={LAST_STREAM_ID}")
    assert result.status_code == 200, result.text
    assert result.json == {"events": [], "next": LAST_STREAM_ID}


def test_a_long_poll_answers_when_an_event_arrives(api, waiters):
    cursor = read(api).json["next"]
    answer = {}

    def poll():
        answer["result"] = read(api, f"after={cursor}&wait=20")
        answer["at"] = time.monotonic()

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    assert wait_until(lambda: waiters.waiting == 1, PROMPTLY_S, interval=0.002)
    created = post(api, {"player_id": "late", "mode": "duel", "mmr": 1}, BACKEND_KEY).json
    created_at = time.monotonic()
    waiters.on_event("mm:events", created["ticket_id"])  # what the subscriber does
    thread.join(PROMPTLY_S)
    assert not thread.is_alive()
    assert [e["ticket_id"] for e in answer["result"].json["events"]] == [created["ticket_id"]]
    assert answer["at"] - created_at < PROMPTLY_S
    assert waiters.waiting == 0


def test_a_long_poll_with_nothing_new_answers_empty_after_wait(api):
    cursor = read(api).json["next"]
    started = time.monotonic()
    result = read(api, f"after={cursor}&wait=1.5").json
    assert result == {"events": [], "next": cursor}
    assert time.monotonic() - started >= 1.4


def test_a_full_replica_answers_at_once_with_retry_after(api, waiters):
    held = [waiters.register(ANY_CHANGE) for _ in range(waiters.max_waiting)]
    try:
        result = read(api, "wait=20")
        assert result.status_code == 200 and result.headers.get("retry-after")
    finally:
        for waiter in held:
            waiters.unregister(waiter)
