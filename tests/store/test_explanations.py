"""A tick's explanations (matching.blocked_by) go to Redis in parts of sessions.WHY_CHUNK, so
that no single call holds Redis from its other clients for long: the result is the same as in
one piece, and another replica writing between two parts keeps its write."""
from mmserver.store import keys, sessions
from tests.store.conftest import new_ticket


def _why(redis_client) -> dict:
    return redis_client.hgetall(keys.why("duel", None))


def test_explanations_written_in_parts_are_the_whole_of_them(store, redis_client, monkeypatch):
    monkeypatch.setattr(sessions, "WHY_CHUNK", 3)
    ids = [new_ticket(store, f"p{n}", mmr=1000 + 400 * n)[0] for n in range(10)]
    blocked = {i: "mmr" for i in ids}
    store.record_blocked("duel", None, blocked)  # full: 4 parts
    why = _why(redis_client)
    assert {k: v for k, v in why.items() if not k.startswith("@")} == blocked
    assert why["@counts"] == '{"mmr":10}'
    # A delta of 4 changes and 3 drops (3 parts), by the same replica.
    for i in ids[:4]:
        blocked[i] = "players"
    for i in ids[-3:]:
        del blocked[i]
    store.record_blocked("duel", None, blocked)
    why = _why(redis_client)
    assert {k: v for k, v in why.items() if not k.startswith("@")} == blocked
    assert why["@counts"] == '{"mmr":3,"players":4}'
    # Nothing waits any more: the key goes.
    store.record_blocked("duel", None, {})
    assert not redis_client.exists(keys.why("duel", None))


def test_another_replica_writing_between_two_parts_keeps_its_write(store, make_store, redis_client, monkeypatch):
    monkeypatch.setattr(sessions, "WHY_CHUNK", 3)
    other = make_store()
    ids = [new_ticket(store, f"p{n}", mmr=1000 + 400 * n)[0] for n in range(7)]
    scripts = store._sessions._scripts
    call = scripts.call
    calls = []

    def interleaved(name, args):
        answer = call(name, args)
        calls.append(answer)
        if name == "why" and len(calls) == 1:  # between this replica's first and second part
            other.record_blocked("duel", None, {ids[0]: "latency"})
        return answer

    monkeypatch.setattr(scripts, "call", interleaved)
    store.record_blocked("duel", None, {i: "mmr" for i in ids})
    assert calls == [1, 0]  # the second part refused: the other replica wrote last
    why = _why(redis_client)
    assert {k: v for k, v in why.items() if not k.startswith("@")} == {ids[0]: "latency"}
    # This replica's next write is a full one, whole again.
    monkeypatch.setattr(scripts, "call", call)
    store.record_blocked("duel", None, {i: "mmr" for i in ids[1:]})
    why = _why(redis_client)
    assert {k: v for k, v in why.items() if not k.startswith("@")} == {i: "mmr" for i in ids[1:]}
