"""A queue's explanations (`matching.blocked_by`), kept a bucket of tickets per field of
`mm:why:{mode}:{region}` (Sessions.record_blocked, why.lua, lib/views.lua): whatever the writes'
parts, failures and the replicas writing in turn, Redis holds exactly the last whole write, and
every ticket whose explanation changed is named (for the view caches) in a call no earlier than
the one that wrote it."""
import json
import random

import pytest
import redis

from mmserver.store import keys, sessions
from mmserver.store.errors import RedisUnavailable
from mmserver.store.tickets import new_ids

KEY = keys.why("duel", None)


def _stored(client) -> dict:
    """The explanations by ticket, plus '@by' and '@counts', unpacked from their buckets."""
    found = {}
    for field, value in client.hgetall(KEY).items():
        if field.startswith("@"):
            found[field] = value
            continue
        assert value, field
        for entry in value.split("\n")[1:]:
            ticket_id, rule = entry.split("=", 1)
            assert keys.why_bucket(ticket_id) == field and ticket_id not in found
            found[ticket_id] = rule
    return found


def _explanations(client) -> dict:
    return {k: v for k, v in _stored(client).items() if not k.startswith("@")}


@pytest.fixture
def views(redis_client):
    """A subscription to mm:views; published(views) -> the ticket ids named since the last call."""
    pubsub = redis_client.pubsub()
    pubsub.subscribe(keys.VIEWS_CHANNEL)
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    yield pubsub
    pubsub.close()


def published(pubsub) -> set:
    """Every id named on mm:views before now: a PING on the same connection is answered after
    whatever a script that already returned published to it."""
    pubsub.ping()
    named = set()
    while True:
        message = pubsub.get_message(timeout=5)
        assert message is not None, "no answer to the PING"
        if message["type"] == "pong":
            return named
        if message["type"] == "message":
            named |= set(message["data"].split(","))


@pytest.mark.parametrize("seed", range(20))
def test_writes_in_parts_by_two_replicas_hold_the_last_whole_write(make_store, redis_client, monkeypatch, seed,
                                                                     views):
    """Random writes from two replicas: parts of 1 to 5,000 explanations, a call failing part
    way, empty writes, ids sharing buckets or extending one another. After each whole write,
    Redis holds it exactly (counts, writer, expiry; no key when nothing waits), each ticket
    whose explanation changed was named in or after the call that made its last change, and
    none other was named (replicas writing in turn write in full: naming every ticket would
    empty every view cache at every tick)."""
    rnd = random.Random(seed)
    stores = [make_store(), make_store()]
    alphabet = "ab" if seed % 2 else "abcdefgh"
    universe = sorted({rnd.choice(alphabet) + rnd.choice(alphabet)
                       + "".join(rnd.choice("xyz") for _ in range(rnd.randint(0, 3))) for _ in range(60)})
    rules = ["mmr", "players", "latency", "a=b"]
    for step in range(30):
        monkeypatch.setattr(sessions, "WHY_CHUNK", rnd.choice([1, 2, 3, 7, 5000]))
        writer = rnd.randrange(2)
        blocked = ({} if rnd.random() < 0.15
                   else {i: rnd.choice(rules) for i in rnd.sample(universe, rnd.randint(1, len(universe)))})
        before = _stored(redis_client)
        log = []
        fail_at = rnd.choice([None, None, None, 1, 2, 3])
        scripts = stores[writer]._sessions._scripts
        real = scripts.call

        def traced(name, args, real=real, fail_at=fail_at, log=log):
            if name != "why":
                return real(name, args)
            if fail_at is not None and len(log) + 1 == fail_at:
                log.append(None)
                raise redis.ConnectionError("cut")
            answer = real(name, args)
            log.append((answer, published(views), _stored(redis_client)))
            return answer

        monkeypatch.setattr(scripts, "call", traced)
        try:
            stores[writer].record_blocked("duel", None, blocked)
        except RedisUnavailable:
            continue
        finally:
            monkeypatch.setattr(scripts, "call", real)
        if not log:
            continue
        after = _stored(redis_client)
        assert _explanations(redis_client) == blocked, step
        if not blocked:
            assert not redis_client.exists(KEY), step
            continue
        counts: dict = {}
        for rule in blocked.values():
            counts[rule] = counts.get(rule, 0) + 1
        assert after["@counts"] == json.dumps(counts, separators=(",", ":"), sort_keys=True)
        assert after["@by"] and redis_client.pttl(KEY) > 0
        states = [entry[2] for entry in log if entry]
        named = [entry[1] for entry in log if entry]
        for i in (set(before) | set(after)) - {"@by", "@counts"}:
            changes = [n for n, state in enumerate(states)
                       if state.get(i) != (states[n - 1].get(i) if n else before.get(i))]
            if not changes:
                assert not any(i in n for n in named), (step, i, "named but never changed")
                continue
            assert any(i in named[n] for n in range(changes[-1], len(named))), (step, i)


@pytest.mark.parametrize("seed", range(15))
def test_another_replica_writing_between_two_parts_never_leaves_a_mix(make_store, redis_client, monkeypatch,
                                                                        seed):
    rnd = random.Random(1000 + seed)
    stores = [make_store(), make_store()]
    universe = sorted({rnd.choice("abc") + rnd.choice("ab") + rnd.choice("xyz") * rnd.randint(0, 2)
                       for _ in range(40)})
    for step in range(20):
        monkeypatch.setattr(sessions, "WHY_CHUNK", rnd.choice([1, 2, 3]))
        writer = rnd.randrange(2)
        blocked = {i: rnd.choice(["mmr", "players"]) for i in rnd.sample(universe, rnd.randint(1, len(universe)))}
        theirs = {i: rnd.choice(["mmr", "latency"]) for i in rnd.sample(universe, rnd.randint(1, len(universe)))}
        scripts = stores[writer]._sessions._scripts
        real = scripts.call
        at = rnd.choice([0, 1, 2, 3])
        calls = [0]

        def traced(name, args, real=real, at=at, calls=calls, theirs=theirs, writer=writer):
            answer = real(name, args)
            if name == "why":
                calls[0] += 1
                if calls[0] == at:
                    stores[1 - writer].record_blocked("duel", None, theirs)
            return answer

        monkeypatch.setattr(scripts, "call", traced)
        stores[writer].record_blocked("duel", None, blocked)
        monkeypatch.setattr(scripts, "call", real)
        assert _explanations(redis_client) in (blocked, theirs), step
        stores[writer].record_blocked("duel", None, blocked)  # the next write is whole again
        assert _explanations(redis_client) == blocked, step


def test_more_than_500_buckets_set_and_dropped_in_one_call(make_store, redis_client):
    store = make_store()
    ids = new_ids(3000)
    blocked = {i: "mmr" for i in ids}
    store.record_blocked("duel", None, blocked)
    assert len(redis_client.hkeys(KEY)) - 2 == len({keys.why_bucket(i) for i in ids}) > 1000
    assert _explanations(redis_client) == blocked
    # A delta dropping the tickets of 700 whole buckets and changing those of 600 others.
    buckets = sorted({keys.why_bucket(i) for i in ids})
    gone, changed = set(buckets[:700]), set(buckets[700:1300])
    after = {i: ("players" if keys.why_bucket(i) in changed else "mmr")
             for i in ids if keys.why_bucket(i) not in gone}
    calls = []
    scripts = store._sessions._scripts
    call = scripts.call
    scripts.call = lambda name, args: calls.append((name, args[2], int(args[5]), int(args[6]))) or call(name, args)
    try:
        store.record_blocked("duel", None, after)
    finally:
        del scripts.call
    assert calls == [("why", "delta", 600, 700)]
    assert _explanations(redis_client) == after


def test_replicas_taking_turns_on_a_queue_that_does_not_move_name_no_ticket(make_store, redis_client, views):
    # Each tick of a queue falls to whichever replica takes its lock: every write is then a
    # full one (the other replica wrote last), and must not empty every view cache.
    stores = [make_store(), make_store()]
    ids = new_ids(3000)
    blocked = {i: "mmr" for i in ids}
    stores[0].record_blocked("duel", None, blocked)
    assert published(views) == set(ids)
    for turn in range(4):
        stores[turn % 2].record_blocked("duel", None, blocked)
        assert published(views) == set(), turn
    # A change still names exactly the tickets it changes, whoever wrote last.
    moved = {**blocked, ids[0]: "players"}
    del moved[ids[1]]
    stores[1].record_blocked("duel", None, moved)
    assert published(views) == {ids[0], ids[1]}
    assert _explanations(redis_client) == moved
