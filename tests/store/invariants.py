"""Checks SPEC's invariants directly on Redis state (tests only: it scans every key)."""
from __future__ import annotations

from collections import Counter

from mmserver.store import keys

LIVE = {"queued", "matched", "assigned"}


def check_invariants(client, team_sizes: dict | None = None) -> dict:
    """Raises AssertionError on any broken invariant; returns {ticket_id: status}.
    `team_sizes` (mode -> team size), when given, also checks that no team of an assigned match
    holds more players plus open backfill places than its size."""
    tickets = {}
    pending = client.hgetall("mm:cl")  # claimed, not rewritten yet (see load() in scripts/lib/claims.lua)
    for key in client.scan_iter("mm:t:*", count=1000):
        record = client.get(key)
        if record is not None:
            tickets[key[len("mm:t:"):]] = keys.unpack_ticket(record)
    # queued tickets: records in the mm:tq: buckets, never also a record of their own
    for key in client.scan_iter("mm:tq:*", count=1000):
        for tid, record in client.hgetall(key).items():
            assert key == keys.queued_tickets(tid), f"{tid} in the wrong bucket {key}"
            assert tid not in tickets, f"{tid} is both a queued record and a ticket record"
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
    # sessions a claim created that no script loaded yet (see load_session() in scripts/lib/claims.lua)
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
            left = set((t.get("lf") or "").split(","))  # party members who left their match
            for p in [t["p"], *(t.get("y") or "").split(",")]:
                if p and p not in left:
                    players[p] += 1
                    assert client.hget(keys.players(p), p) == tid, f"index of {p} does not name {tid}"
    assert all(n == 1 for n in players.values()), "a player holds two live tickets"
    for field, value in client.hgetall("mm:n").items():
        kind, mode = field.split(":", 1)
        actual = (matched if kind == "m" else assigned)[mode]
        assert int(value) == actual, f"counter {field}={value}, actual {actual}"
    # A session waiting for a server is in its region's line, and only there (or still in the
    # single line of releases before); a line holds no session in another state for long.
    lines: dict[str, str] = {sid: keys.ALLOCATING for sid in client.zrange(keys.ALLOCATING, 0, -1)}
    recorded = {keys.allocating(region) for region in ("", *client.smembers(keys.ALLOCATING_REGIONS))}
    for key in client.scan_iter(keys.ALLOCATING + ":*", count=1000):
        if client.zcard(key):
            assert key in recorded, f"line {key} holds sessions, but its region is not in {keys.ALLOCATING_REGIONS}"
        for sid in client.zrange(key, 0, -1):
            assert lines.get(sid, key) == key, f"session {sid} in two allocation lines"
            lines[sid] = key
    for sid, s in sessions.items():
        if s.get("st") == "allocating":
            assert lines.get(sid) in (keys.allocating(s.get("rg")), keys.ALLOCATING), \
                f"allocating session {sid} of region {s.get('rg')!r} is in line {lines.get(sid)}"
    busy = client.smembers("mm:sv:busy")
    owners = Counter(client.hget(keys.server(sv), "m") for sv in busy)
    assert all(n == 1 for n in owners.values()), "a match holds two servers"
    check_rosters_and_backfills(client, tickets, sessions, team_sizes or {})
    return {tid: t["s"] for tid, t in tickets.items()}


def check_rosters_and_backfills(client, tickets: dict, sessions: dict, team_sizes: dict) -> None:
    """An assigned match's players by team (pl) are exactly the players still there of the
    tickets on its ticket lists (tk), team by team; every open backfill is listed by its
    assigned match, in its mode's open set and in the expiry set, and nothing else is."""
    open_backfills = {}
    for key in client.scan_iter(keys.BACKFILL_PREFIX + "*", count=1000):
        b = client.hgetall(key)
        if b.get("st") == "open":
            open_backfills[key[len(keys.BACKFILL_PREFIX):]] = b
    listed = set()
    for sid, s in sessions.items():
        if s.get("st") != "assigned":
            assert not s.get("bf"), f"{s.get('st')} match {sid} lists backfills {s.get('bf')}"
            continue
        expected = []
        for team in s["tk"].split(";"):
            players = []
            for tid in [i for i in team.split(",") if i]:
                t = tickets[tid]
                if t["s"] != "assigned" or t.get("x") != sid:
                    continue
                left = set((t.get("lf") or "").split(","))
                players += [p for p in [t["p"], *(t.get("y") or "").split(",")] if p and p not in left]
            expected.append(sorted(players))
        actual = [sorted(p for p in team.split(",") if p) for team in (s.get("pl") or "").split(";")]
        assert actual == expected, f"match {sid} roster {actual} but its tickets hold {expected}"
        places = Counter()
        for bid in [i for i in (s.get("bf") or "").split(",") if i]:
            b = open_backfills.get(bid)
            assert b is not None and b["m"] == sid, f"match {sid} lists {bid}, not an open backfill of it"
            listed.add(bid)
            for slot in b["sl"].split(","):
                team, _role, count = slot.split(":")
                places[int(team)] += int(count)
        size = team_sizes.get(s["md"])
        if size is not None:
            for team, players in enumerate(actual):
                assert len(players) + places[team] <= size, f"team {team} of {sid} over-full"
    assert set(open_backfills) == listed, f"open backfills no match lists: {set(open_backfills) - listed}"
    for bid, b in open_backfills.items():
        assert client.zscore(keys.open_backfills(b["o"]), bid) is not None, f"{bid} not in its open set"
        assert client.zscore(keys.BACKFILL_EXPIRY, bid) is not None, f"{bid} not in the expiry set"
