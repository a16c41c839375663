"""A tick's big reads and writes go to Redis in parts (sessions.READ_CHUNK, WHY_CHUNK), so that
no single command holds Redis from its other clients for long: the result is the same as in one
piece, and a change between two parts loses and duplicates nothing."""
from mmserver.store import keys, sessions
from tests.store.conftest import new_ticket


def _why(redis_client) -> dict:
    return redis_client.hgetall(keys.why("duel", None))


def _parts(store, monkeypatch, between):
    """Reads of the queue in parts of 4; `between(n)` runs after the n-th ZRANGE (from 1)."""
    monkeypatch.setattr(sessions, "READ_CHUNK", 4)
    client = store._sessions._client
    zrange = client.zrange
    calls = []

    def watched(name, start, end, *args, **kwargs):
        part = zrange(name, start, end, *args, **kwargs)
        calls.append((start, end))
        between(len(calls))
        return part

    monkeypatch.setattr(client, "zrange", watched)
    return calls


def test_the_queue_read_in_parts_has_every_ticket_once(store, monkeypatch):
    ids = {new_ticket(store, f"p{n}", mmr=1000 + n)[0] for n in range(11)}
    calls = _parts(store, monkeypatch, lambda n: None)
    tickets = store.read_queue("duel", None)
    assert calls == [(0, 3), (3, 7), (7, 11)]  # each part from the last member of the one before
    assert len(tickets) == 11 and {t.ticket_id for t in tickets} == ids


def test_a_member_gone_or_moved_before_the_place_reads_the_queue_again(store, redis_client, monkeypatch):
    ids = [new_ticket(store, f"p{n}", mmr=1000 + n)[0] for n in range(11)]
    queue = keys.queue("duel", None)
    first, second = redis_client.zrange(queue, 0, 1)

    def change(n):
        if n == 1:  # a cancel takes the first member, a read pushes the second one's TTL back
            redis_client.zrem(queue, first)
            redis_client.zadd(queue, {second: 10**15}, xx=True)

    calls = _parts(store, monkeypatch, change)
    tickets = store.read_queue("duel", None)
    assert calls == [(0, 3), (3, 7), (0, -1)]  # the second part did not start where the first ended
    assert sorted(t.ticket_id for t in tickets) == sorted(set(ids) - {first.split("|")[0]})


def test_a_member_read_twice_is_kept_once(store, redis_client, monkeypatch):
    # A move and a requeue before the place at once leave the ranks after it as they were: the
    # moved member comes a second time at its new place, and the requeued one waits a tick.
    ids = [new_ticket(store, f"p{n}", mmr=1000 + n)[0] for n in range(11)]
    queue = keys.queue("duel", None)
    members = redis_client.zrange(queue, 0, -1, withscores=True)
    (gone, gone_score), (moved, _) = members[0], members[1]
    redis_client.zrem(queue, gone)

    def change(n):
        if n == 1:
            redis_client.zadd(queue, {moved: 10**15}, xx=True)
            redis_client.zadd(queue, {gone: gone_score})

    calls = _parts(store, monkeypatch, change)
    tickets = store.read_queue("duel", None)
    assert calls == [(0, 3), (3, 7), (7, 11)]
    # no duplicate; the requeued one waits for the next tick
    assert sorted(t.ticket_id for t in tickets) == sorted(set(ids) - {gone.split("|")[0]})


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
