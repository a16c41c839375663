"""The matchmaker's side of the store: queues in, loading sessions out, deadlines, allocation."""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from typing import Mapping, Sequence

import redis

from mmserver.matchmaking import QueuedTicket
from mmserver.store import keys, profiles
from mmserver.store.scripts import Calls, Scripts
from mmserver.store.tickets import new_ids

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClaimResult:
    session_id: str | None  # set when the proposal was claimed
    failed: tuple[str, ...]  # ticket ids no longer queued here, when it was not


def claim_results(session_ids: Sequence[str], replies: Sequence[str]) -> list[ClaimResult]:
    """claim.lua's replies, one per proposal: '' when claimed, else the ids no longer queued."""
    return [ClaimResult(sid, ()) if reply == "" else ClaimResult(None, tuple(reply.split(",")))
            for sid, reply in zip(session_ids, replies)]


class Claims:
    """One queue's claim batches, each one claim.lua call sent at once (scripts.Calls) while
    the caller goes on; results read back in the order sent. At most `width` in flight:
    the caller receives before sending more."""

    def __init__(self, sessions: Sessions, calls: Calls, mode: str, region: str | None,
                 accept_timeout_s: float) -> None:
        self._sessions = sessions
        self._calls = calls
        self._mode = mode
        self._region = region
        self._accept_timeout_s = accept_timeout_s
        self._session_ids: deque[list[str]] = deque()

    @property
    def in_flight(self) -> int:
        return self._calls.in_flight

    def send(self, proposals: Sequence[Sequence[Sequence[str]]], choices: Sequence[str] | None = None) -> None:
        session_ids, args = self._sessions.claim_args(self._mode, self._region, proposals,
                                                      self._accept_timeout_s, choices)
        self._calls.send(args)
        self._session_ids.append(session_ids)

    def receive(self) -> list[ClaimResult]:
        """The results of the oldest batch in flight."""
        session_ids = self._session_ids.popleft()
        return claim_results(session_ids, self._calls.receive())

    def close(self) -> None:
        self._session_ids.clear()
        self._calls.close()


@dataclass(frozen=True)
class AllocationPage:
    """One allocation script's answer (Sessions.allocate)."""
    allocated: int  # matches given a server
    waiting: int  # sessions still without one, in all
    more: bool  # another call may find more to do (the limit was reached, the line of releases
    # before was not emptied, or entries that took no server were cleared)


@dataclass(frozen=True)
class DeadlineCounts:
    ready_checks: int
    allocation_timeouts: int
    expired_tickets: int
    lost_servers: int
    more: bool  # more were due than the limit allowed
    ended_matches: int = 0  # past their mode's max_match_s
    removed_servers: int = 0  # registered servers silent past their retention
    expired_backfills: int = 0  # open backfills past their ttl_s

    @property
    def total(self) -> int:
        return (self.ready_checks + self.allocation_timeouts + self.expired_tickets + self.lost_servers
                + self.ended_matches + self.removed_servers + self.expired_backfills)


WHY_TTL_S = 60.0  # explanations outlive a tick by this much, then leave Redis
# A tick's big reads and writes go in parts: Redis answers nobody else while it runs one
# command or script, and at 100,000 tickets the queue's read held it 27-35 ms, the first write
# of its explanations 100-165 ms. Parts of these sizes hold it 3-11 ms each.
READ_CHUNK = 10_000  # queue members per read
WHY_CHUNK = 5_000  # explanations set or dropped per why.lua call


def _pack_why(entries: Mapping[str, str]) -> str:
    """One bucket of a queue's explanations as stored: '\n<id>=<rule>' per ticket. Ticket ids
    (base64url) and rule names ([A-Za-z0-9_.-], or a reserved name) hold neither '\n' nor
    '=', so the view finds a ticket's by '\n<id>=' (lib/views.lua)."""
    return "".join([f"\n{i}={r}" for i, r in entries.items()])


def _unpack_why(value: str) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in value.split("\n")[1:])


def parse_member(member: str) -> QueuedTicket:
    parts = member.split("|", 4)
    if len(parts) == 4:
        ticket_id, mmr, size, enqueued_ms = parts
        return QueuedTicket(ticket_id, float(mmr), int(size), int(enqueued_ms) / 1000.0)
    ticket_id, mmr, size, enqueued_ms, profile = parts
    return profiles.queued_ticket(ticket_id, float(mmr), int(size), int(enqueued_ms) / 1000.0, profile)


class Sessions:
    def __init__(self, client: redis.Redis, scripts: Scripts, *, retention_s: int,
                 allocation_timeout_ms: int, heartbeat_ttl_ms: int, static_servers: Sequence[str],
                 static_regions: Mapping[str, str] | None = None,
                 max_match_ms: Mapping[str, int] | None = None,
                 server_retention_ms: int = 3_600_000, regions: Sequence[str] = ()) -> None:
        self._client = client
        self._scripts = scripts
        self._retention_s = retention_s
        self._allocation_timeout_ms = allocation_timeout_ms
        self._heartbeat_ttl_ms = heartbeat_ttl_ms
        static_regions = static_regions or {}
        # 'address|region' per static server; the digest covers the whole list, so any change
        # (an address removed, a region changed, the list emptied) reconciles the pool.
        self._static = [f"{address}|{static_regions.get(address, '')}" for address in static_servers]
        self._static_digest = hashlib.sha256("\n".join(sorted(self._static)).encode()).hexdigest()[:16]
        self._max_match = ",".join(f"{mode}={ms}" for mode, ms in (max_match_ms or {}).items())
        self._server_retention_ms = server_retention_ms
        self._regions = list(regions)
        self._last_clashes = ""  # logged when it changes, not at every tick
        # The members of the last read of each queue, so claims name the exact members and the
        # script need not read each ticket to rebuild them.
        self._members: dict[str, dict[str, str]] = {}
        # Per why key: this replica's last write (its token, what it wrote by ticket, and by
        # bucket as packed).
        self._why: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {}
        self._parsed: dict[str, dict[str, QueuedTicket]] = {}
        self._members_lock = threading.Lock()

    def regions(self, mode: str) -> list[str | None]:
        return sorted((r or None for r in self._client.smembers(keys.regions(mode))),
                      key=lambda r: r or "")

    def read_queue(self, mode: str, region: str | None) -> list[QueuedTicket]:
        """Every queued ticket of one queue, from its members alone (no ticket hash is touched)."""
        queue = keys.queue(mode, region)
        members = self._read_members(queue)
        # A member read at the last tick is taken from then: a member never changes while its
        # ticket is queued, and a queue of 100,000 plain members takes ~0.09 s to parse again
        # (a JSON decoding each more with profiles) against ~0.02 s to look them up.
        before = self._parsed.get(queue, {})
        parsed = {m: before.get(m) or parse_member(m) for m in members}
        self._parsed[queue] = parsed
        tickets = list(parsed.values())
        with self._members_lock:
            self._members[queue] = {t.ticket_id: m for t, m in zip(tickets, members)}
        oldest = min((t.enqueued_at for t in tickets), default=None)
        if oldest is not None:
            self._client.hset(keys.OLDEST, queue, int(oldest * 1000))
        return tickets

    def _read_members(self, queue: str) -> list[str]:
        """The queue's members, READ_CHUNK at a time by score (the ticket's TTL deadline), each
        part from the score of the last member of the part before, that score included. A
        queued ticket's score only grows (a read pushes its deadline back), so a change
        between two parts loses no ticket queued all along: one removed was not needed, one
        pushed back comes again later, and the members of a boundary's score come twice; each
        is kept once (a member's text is its ticket's, unchanged while queued). One requeued
        meanwhile with an older score waits for the next tick, as does one whose deadline a
        shortened TTL moved below the part being read (a rolling change of ticket_ttl_s), or,
        rarely, one changed between the two commands of a part. Each part is one pipeline: its
        members, and the score of its last one."""
        low: str | float = "-inf"
        members: list[str] = []
        while True:
            pipe = self._client.pipeline(transaction=False)
            pipe.zrangebyscore(queue, low, "+inf", start=0, num=READ_CHUNK)
            pipe.zrangebyscore(queue, low, "+inf", start=READ_CHUNK - 1, num=1, withscores=True)
            part, edge = pipe.execute()
            members.extend(part)
            if len(part) < READ_CHUNK:
                return list(dict.fromkeys(members)) if low != "-inf" else members
            if not edge or edge[0][1] == low:  # a whole part at one score: read it whole instead
                return self._client.zrange(queue, 0, -1)
            low = edge[0][1]

    def queued_members(self, mode: str, region: str | None) -> dict[str, str]:
        """Ticket id -> queue member, as the last read_queue of that queue saw them."""
        with self._members_lock:
            return self._members.get(keys.queue(mode, region), {})

    def record_blocked(self, mode: str, region: str | None, blocked: Mapping[str, str],
                       ttl_s: float = WHY_TTL_S) -> None:
        """Why each unmatched ticket of a queue waits, for its view (`matching.blocked_by`)
        and the per-rule counts of the status. Only changes since this replica's own last
        write go to Redis (why.lua), so a big queue that does not move costs one small call.

        Tickets are kept by bucket (keys.why_bucket: ~25 a field at 100,000 queued), each
        field '\n<id>=<rule>' per ticket: a hash of one field per ticket was a hashtable
        entry of ~83 bytes a queued ticket, a bucket's share ~25. A change rewrites the
        fields of the buckets it touches."""
        key = keys.why(mode, region)
        last = self._why.get(key)
        if not blocked and (last is None or not last[1]):
            return  # nothing waits, nothing was written: no call (an old key expires)
        # Until this write is whole, what Redis holds is unknown: after an error part-way, the
        # next write is a full one (a token no write has: the delta is refused), even of nothing.
        self._why[key] = ("", {"": ""}, {})  # (token, {id: rule}, {bucket: packed}) as written
        counts: dict[str, int] = {}
        for rule in blocked.values():
            counts[rule] = counts.get(rule, 0) + 1
        counts_json = json.dumps(counts, separators=(",", ":"), sort_keys=True)
        ttl_ms = max(1, int(ttl_s * 1000))
        if last is not None:
            token, before, buckets = last
            changed = [(i, r) for i, r in blocked.items() if before.get(i) != r]
            dropped = [i for i in before if i not in blocked]
        # After a tick that matched most of the queue, rewriting the few left is cheaper than
        # deleting the many gone.
        if last is not None and len(changed) + len(dropped) <= len(blocked):
            # The buckets these changes touch, as they will be (from what this replica wrote),
            # and the tickets that changed in each.
            touched: dict[str, tuple[dict[str, str], list[str]]] = {}
            for i, r in [(i, None) for i in dropped] + changed:
                b = keys.why_bucket(i)
                found = touched.get(b)
                if found is None:
                    found = touched[b] = (_unpack_why(buckets.get(b, "")), [])
                entries, named = found
                named.append(i)
                if r is None:
                    entries.pop(i, None)
                else:
                    entries[i] = r
            writes = {b: (_pack_why(entries), named) for b, (entries, named) in touched.items()}
            if self._write_why(key, token, "delta", ttl_ms, counts_json, writes):
                for b, (value, _) in writes.items():
                    if value:
                        buckets[b] = value
                    else:
                        buckets.pop(b, None)
                self._why[key] = (token, dict(blocked), buckets)
                return
        token = secrets.token_hex(8)
        by_bucket: dict[str, dict[str, str]] = {}
        for i, r in blocked.items():
            b = keys.why_bucket(i)
            entries = by_bucket.get(b)
            if entries is None:
                by_bucket[b] = {i: r}
            else:
                entries[i] = r
        writes = {b: (_pack_why(entries), []) for b, entries in by_bucket.items()}
        if self._write_why(key, token, "full", ttl_ms, counts_json, writes):
            self._why[key] = (token, dict(blocked), {b: value for b, (value, _) in writes.items()})
        else:  # another replica wrote between two parts: its write stands, this one's next is full
            self._why.pop(key, None)

    def _write_why(self, key: str, token: str, how: str, ttl_ms: int, counts_json: str,
                   writes: Mapping[str, tuple[str, list[str]]]) -> bool:
        """why.lua in calls of about WHY_CHUNK explanations (whole buckets): the first as `how`
        asks, the rest as its continuation ('delta', or 'replace' after a 'full' first call,
        which drops every bucket the whole write does not hold); each checks that this token
        wrote last. `writes`: bucket -> (its packed content, '' to drop it; for a delta, the
        tickets in it whose explanation changed, named in the same call so that their cached
        views are dropped once it is written: a full write's calls find those themselves).
        False when one refused (another replica wrote in between). Between two calls a view may
        miss its explanation for a moment; the counts are the tick's from the first."""
        parts: list[tuple[list[tuple[str, str]], list[str], list[str]]] = [([], [], [])]
        size = 0
        for b, (value, named) in writes.items():
            if size >= WHY_CHUNK:
                parts.append(([], [], []))
                size = 0
            if value:
                parts[-1][0].append((b, value))
            else:
                parts[-1][1].append(b)
            parts[-1][2].extend(named)
            size += max(1, value.count("\n"), len(named))
        full = how == "full"
        for n, (sets, drops, notify) in enumerate(parts):
            every = list(writes) if full and n == 0 else []
            step = how if n == 0 else ("replace" if full else "delta")
            if not self._scripts.call("why", [key, token, step, ttl_ms, counts_json,
                                              len(sets), len(drops), len(every), *(b for b, _ in sets),
                                              *(v for _, v in sets), *drops, *every,
                                              *(() if full else notify)]):
                return False
        return True

    def claim(self, mode: str, region: str | None, proposals: Sequence[Sequence[Sequence[str]]],
              accept_timeout_s: float, choices: Sequence[str] | None = None) -> list[ClaimResult]:
        """One script call for the whole batch; each proposal (ticket ids per team) is
        claimed all-or-nothing into a new loading session. `choices`: per proposal, what the
        rules chose (profiles.encode_choices; '' or None for a plain mode)."""
        if not proposals:
            return []
        session_ids, args = self.claim_args(mode, region, proposals, accept_timeout_s, choices)
        return claim_results(session_ids, self._scripts.call("claim", args))

    def claims(self, mode: str, region: str | None, accept_timeout_s: float, width: int) -> Claims:
        """Claim batches of one queue sent while the caller goes on: see Claims."""
        return Claims(self, self._scripts.calls("claim", width), mode, region, accept_timeout_s)

    def claim_args(self, mode: str, region: str | None, proposals: Sequence[Sequence[Sequence[str]]],
                   accept_timeout_s: float, choices: Sequence[str] | None = None) -> tuple[list[str], list]:
        """The new session ids, and the arguments of claim.lua for these proposals."""
        with self._members_lock:
            known = self._members.get(keys.queue(mode, region), {})
        session_ids = new_ids(len(proposals))
        # Columns for the script (see claim.lua), each joined into one argument: the client
        # encodes a dozen arguments instead of one per value (~0.45 us each), the script splits
        # them. The ids come from the teams' text: ',' and ';' become '\n'. Anything unusual
        # (an empty team, a value holding a separator) makes more values than tickets, or
        # more lines than values, and the batch goes with one argument per value instead.
        n = len(proposals)
        teams_text = "\n".join([";".join([",".join(team) for team in teams]) for teams in proposals])
        counts = [sum(map(len, teams)) for teams in proposals]
        m = sum(counts)
        ids_text = teams_text.replace(";", "\n").replace(",", "\n")
        ids = ids_text.split("\n") if m else []
        # An id missing from the last read goes bare: the script looks its member up.
        members = list(map(known.get, ids, ids))
        members_text = "\n".join(members)
        extras_text = "\n".join(choices) if choices is not None else ""
        head = [mode, region or "", int(accept_timeout_s * 1000), self._allocation_timeout_ms, n, m]
        if (len(ids) == m and members_text.count("\n") == max(m - 1, 0)
                and extras_text.count("\n") == (n - 1 if choices is not None else 0)):
            # Shortcuts (claim.lua): no extras when none has any, one count when all are equal.
            if not extras_text.strip("\n"):
                extras_text = ""
            counts_text = str(counts[0]) if counts.count(counts[0]) == n else ",".join(map(str, counts))
            args = [*head, "j", "\n".join(session_ids), teams_text, extras_text, counts_text,
                    members_text, ids_text]
        else:
            teams_list, ids = [], []
            for teams in proposals:
                teams_list.append(";".join([",".join(team) for team in teams]))
                for team in teams:
                    ids.extend(team)
            members = [known.get(i, i) for i in ids]
            args = [*head, "a", *session_ids, *teams_list,
                    *(choices if choices is not None else [""] * n), *counts, *members, *ids]
        return session_ids, args

    def process_deadlines(self, limit: int) -> DeadlineCounts:
        reply = self._scripts.call("deadlines", [limit, self._retention_s, self._heartbeat_ttl_ms,
                                                 self._server_retention_ms, *self._regions])
        return DeadlineCounts(*(int(x) for x in reply[:4]), more=bool(int(reply[4])),
                              ended_matches=int(reply[5]), removed_servers=int(reply[6]),
                              expired_backfills=int(reply[7]))

    def allocate(self, limit: int) -> AllocationPage:
        """Servers for up to `limit` waiting sessions, oldest first across the regions' lines."""
        # Fresh random bytes per call: the join tokens the script derives are unpredictable.
        args = [limit, self._heartbeat_ttl_ms, self._static_digest, secrets.token_hex(16),
                self._max_match, len(self._static)]
        reply = self._scripts.call("allocate", args)
        if reply[0] == "seed":  # first call on this Redis, or the static list changed
            reply = self._scripts.call("allocate", args + self._static)
        if reply[2] and reply[2] != self._last_clashes:
            logger.warning("static servers not added yet, their address is held by a registered server: %s",
                           reply[2])
        self._last_clashes = reply[2]
        return AllocationPage(int(reply[0]), int(reply[1]), bool(int(reply[3])))
