"""Checks SPEC's invariants directly on Redis state (tests only: it scans every key)."""
from __future__ import annotations

from collections import Counter

from mmserver.store import keys

LIVE = {"queued", "matched", "assigned"}


def check_invariants(client) -> dict:
    """Raises AssertionError on any broken invariant; returns {ticket_id: status}."""
    tickets = {}
    pending = client.hgetall("mm:cl")  # claimed, not rewritten yet (see load() in lib.lua)
    for key in client.scan_iter("mm:t:*", count=1000):
        tickets[key[len("mm:t:"):]] = client.hgetall(key)
    # queued tickets: records in the mm:tq: buckets, never also a hash of their own
    for key in client.scan_iter("mm:tq:*", count=1000):
        for tid, record in client.hgetall(key).items():
            assert key == keys.queued_tickets(tid), f"{tid} in the wrong bucket {key}"
            assert tid not in tickets, f"{tid} is both a queued record and a hash"
            tickets[tid] = keys.unpack_queued(record)
    for tid, t in tickets.items():
        if tid in pending:
            assert t["s"] == "queued", f"{tid} is {t['s']} with a pending claim"
            t["s"], t["x"] = "matched", pending[tid].split("|")[0]
    assert set(pending) <= set(tickets), "a pending claim names a missing ticket"
    queue_members = Counter()
    for queue in client.smembers("mm:qk"):
        for member in client.zrange(queue, 0, -1):
            tid = member.split("|")[0]
            queue_members[tid] += 1
            t = tickets.get(tid)
            assert t is not None, f"queue {queue} holds unknown ticket {tid}"
            assert t["s"] == "queued", f"{tid} is {t['s']} but still in {queue}"
            assert queue == f"mm:q:{t['m']}:{t.get('g', '')}", f"{tid} in the wrong queue"
    in_sessions = Counter()
    sessions = {}
    for key in client.scan_iter("mm:s:*", count=1000):
        sessions[key[len("mm:s:"):]] = client.hgetall(key)
    # sessions a claim created that no script loaded yet (see load_session() in lib.lua)
    for sid, value in client.hgetall(keys.PENDING_SESSIONS).items():
        assert sid not in sessions, f"session {sid} both pending and written"
        sessions[sid] = keys.unpack_pending_session(value)
    for s in sessions.values():
        if s.get("st") in ("accepting", "allocating", "assigned"):
            for tid in s["tk"].replace(";", ",").split(","):
                in_sessions[tid] += 1
    players = Counter()
    matched = Counter()
    assigned = Counter()
    for tid, t in tickets.items():
        status = t["s"]
        if status == "queued":
            assert queue_members[tid] == 1, f"queued {tid} is in {queue_members[tid]} queues"
        else:
            assert queue_members[tid] == 0, f"{status} {tid} still queued"
        if status in ("matched", "assigned"):
            s = sessions.get(t["x"])
            assert s is not None, f"{status} {tid} points to a missing session"
            expected = "assigned" if status == "assigned" else ("accepting", "allocating")
            assert s["st"] in expected, f"{status} {tid} in a session that is {s['st']}"
            assert in_sessions[tid] == 1, f"{tid} in {in_sessions[tid]} sessions"
            (matched if status == "matched" else assigned)[t["m"]] += 1
        else:
            assert in_sessions[tid] == 0, f"{status} {tid} still in a live session"
        if status in LIVE:
            for p in [t["p"], *(t.get("y") or "").split(",")]:
                if p:
                    players[p] += 1
                    assert client.hget(keys.players(p), p) == tid, f"index of {p} does not name {tid}"
    assert all(n == 1 for n in players.values()), "a player holds two live tickets"
    for field, value in client.hgetall("mm:n").items():
        kind, mode = field.split(":", 1)
        actual = (matched if kind == "m" else assigned)[mode]
        assert int(value) == actual, f"counter {field}={value}, actual {actual}"
    busy = client.smembers("mm:sv:busy")
    owners = Counter(client.hget(keys.server(sv), "m") for sv in busy)
    assert all(n == 1 for n in owners.values()), "a match holds two servers"
    return {tid: t["s"] for tid, t in tickets.items()}
