"""A tick's big reads and writes go to Redis in parts (sessions.READ_CHUNK, WHY_CHUNK), so that
no single command holds Redis from its other clients for long: the result is the same as in one
piece, and a change between two parts loses and duplicates nothing."""
import pytest
import redis

from mmserver.store import keys, sessions
from mmserver.store.errors import RedisUnavailable
from tests.store.conftest import new_ticket


def _why(redis_client) -> dict:
    """The queue's explanations by ticket ('@by' and '@counts' as they are), unpacked from the
    buckets they are stored in."""
    found = {}
    for field, value in redis_client.hgetall(keys.why("duel", None)).items():
        if field.startswith("@"):
            found[field] = value
            continue
        for entry in value.split("\n")[1:]:
            ticket_id, rule = entry.split("=", 1)
            assert keys.why_bucket(ticket_id) == field, (ticket_id, field)
            found[ticket_id] = rule
    return found


def _parts(store, monkeypatch, between=lambda n: None):
    """Reads of the queue in parts of 4; `between(n)` runs after the n-th part (from 1).
    Returns the number of members of each part, as read."""
    monkeypatch.setattr(sessions, "READ_CHUNK", 4)
    client = store._sessions._client
    pipeline = client.pipeline
    parts = []

    def watched(*args, **kwargs):
        pipe = pipeline(*args, **kwargs)
        execute = pipe.execute

        def run(*a, **k):
            answer = execute(*a, **k)
            parts.append(len(answer[0]))
            between(len(parts))
            return answer

        pipe.execute = run
        return pipe

    monkeypatch.setattr(client, "pipeline", watched)
    return parts


def _scores(redis_client, scores) -> list[str]:
    """Gives the queue's members these scores (TTL deadlines), in their order; returns them."""
    queue = keys.queue("duel", None)
    members = redis_client.zrange(queue, 0, -1)
    redis_client.zadd(queue, dict(zip(members, scores)), xx=True)
    return redis_client.zrange(queue, 0, -1)


def _ids(tickets) -> list[str]:
    ids = [t.ticket_id for t in tickets]
    assert len(ids) == len(set(ids)), "a ticket read twice"
    return sorted(ids)


def test_the_queue_read_in_parts_has_every_ticket_once(store, redis_client, monkeypatch):
    for size in (3, 8, 11):  # less than a part, a multiple of a part, more
        store._sessions._client.flushall()
        ids = [new_ticket(store, f"p{n}", mmr=1000 + n)[0] for n in range(size)]
        _scores(redis_client, range(1000, 1000 + size))
        parts = _parts(store, monkeypatch)
        assert _ids(store.read_queue("duel", None)) == sorted(ids)
        assert len(parts) == 1 if size < 4 else len(parts) > 1
        monkeypatch.undo()


def test_changes_between_two_parts_lose_no_ticket_queued_all_along(store, redis_client, monkeypatch):
    ids = [new_ticket(store, f"p{n}", mmr=1000 + n)[0] for n in range(11)]
    queue = keys.queue("duel", None)
    members = _scores(redis_client, range(1000, 1011))

    def change(n):
        if n == 1:  # a cancel takes a member already read; reads push two others' TTLs back,
            redis_client.zrem(queue, members[0])  # one already read (it comes again), one not yet
            redis_client.zadd(queue, {members[1]: 10**15, members[9]: 10**15 + 1}, xx=True)

    parts = _parts(store, monkeypatch, change)
    tickets = store.read_queue("duel", None)
    assert len(parts) > 2 and sum(parts) > 11  # parts overlap at their boundary's score
    # every ticket once; the cancelled one as read before its cancel (a claim would refuse it)
    assert _ids(tickets) == sorted(ids)


def test_members_of_a_boundary_score_are_read_once(store, redis_client, monkeypatch):
    ids = [new_ticket(store, f"p{n}", mmr=1000 + n)[0] for n in range(11)]
    _scores(redis_client, [1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 5])
    parts = _parts(store, monkeypatch)
    assert _ids(store.read_queue("duel", None)) == sorted(ids)
    assert parts == [4, 4, 4, 3]  # each from the score its part before ended on, that score again


def test_a_part_all_at_one_score_reads_the_queue_whole(store, redis_client, monkeypatch):
    ids = [new_ticket(store, f"p{n}", mmr=1000 + n)[0] for n in range(11)]
    queue = keys.queue("duel", None)
    redis_client.zadd(queue, {m: 5 for m in redis_client.zrange(queue, 0, -1)}, xx=True)
    parts = _parts(store, monkeypatch)
    assert _ids(store.read_queue("duel", None)) == sorted(ids)
    assert parts == [4, 4]  # the second part started at the same score: no way forward by score


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


def test_a_write_cut_short_by_an_error_is_followed_by_a_full_one(store, redis_client, monkeypatch):
    monkeypatch.setattr(sessions, "WHY_CHUNK", 1)
    store.record_blocked("duel", None, {"a": "mmr", "b": "mmr", "c": "mmr"})
    scripts = store._sessions._scripts
    call = scripts.call
    calls = []

    def failing_second(name, args):
        calls.append(name)
        if len(calls) == 2:
            raise redis.ConnectionError("connection lost between two parts")
        return call(name, args)

    monkeypatch.setattr(scripts, "call", failing_second)
    with pytest.raises(RedisUnavailable):  # a delta of two parts: the first applied, not the second
        store.record_blocked("duel", None, {"a": "players", "b": "mmr", "c": "mmr", "f": "mmr"})
    monkeypatch.setattr(scripts, "call", call)
    blocked = {"a": "mmr", "b": "mmr", "c": "mmr"}
    store.record_blocked("duel", None, blocked)  # full: the replica no longer knows what Redis holds
    why = _why(redis_client)
    assert {k: v for k, v in why.items() if not k.startswith("@")} == blocked
    assert why["@counts"] == '{"mmr":3}'
    # Cut short again, then nothing waits: the write of nothing is still made, and the key goes.
    calls.clear()
    monkeypatch.setattr(scripts, "call", failing_second)
    with pytest.raises(RedisUnavailable):
        store.record_blocked("duel", None, {"a": "players", "b": "players", "c": "mmr"})
    monkeypatch.setattr(scripts, "call", call)
    store.record_blocked("duel", None, {})
    assert not redis_client.exists(keys.why("duel", None))


def test_explanations_are_kept_a_bucket_of_tickets_per_field(store, redis_client):
    """A queue's explanations take a field per bucket of tickets (keys.why_bucket), not one per
    ticket; each ticket's view finds its own, also beside ids that extend its id."""
    tickets = [new_ticket(store, f"p{n}", mmr=1000 + 400 * n) for n in range(60)]
    rules = ("mmr", "players", "latency", "roles")
    first, first_token = tickets[0]
    # Ids in the first ticket's bucket that hold its id, written before it: never its answer.
    blocked = {first + "x": "latency", first[:2] + first: "roles"}
    blocked |= {ticket_id: rules[n % 4] for n, (ticket_id, _) in enumerate(tickets)}
    store.record_blocked("duel", None, blocked)
    fields = redis_client.hkeys(keys.why("duel", None))
    assert len(fields) == len({keys.why_bucket(i) for i in blocked}) + 2  # and '@by', '@counts'
    assert _why(redis_client) | {"@by": None, "@counts": None} == blocked | {"@by": None, "@counts": None}
    for n, (ticket_id, token) in enumerate(tickets):
        assert store.read_ticket(ticket_id, token)["matching"]["blocked_by"] == rules[n % 4]
    # A delta that changes one ticket rewrites its bucket: its neighbours keep theirs.
    blocked[first] = "players"
    del blocked[first + "x"]
    store.record_blocked("duel", None, blocked)
    assert store.read_ticket(first, first_token)["matching"]["blocked_by"] == "players"
    assert _why(redis_client) | {"@by": None, "@counts": None} == blocked | {"@by": None, "@counts": None}
