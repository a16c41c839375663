"""Webhook delivery state in Redis: a consumer group on the event log, retries, dead letters.

Every replica's delivery worker is a consumer (named by its replica id) of the group `webhooks`
on `mm:ev` and on `mm:wh:replay` (keys.py). An event read by a consumer stays in the group's
pending list until it is acknowledged: after a 2xx, when its type is not wanted, when it becomes
a dead letter, or when the log dropped it first. The pending list is therefore the delivery
state, shared by every replica: Redis's delivery count is the number of attempts, its idle time
the time since the last one, and XCLAIM with a minimum idle time hands a due retry to exactly one
replica, whichever asks first (the owner of a dead replica's entries is irrelevant).

The group is created at `$` on the first start: events appended before webhooks were configured
are not sent. If it disappears later (the stream deleted, a Redis without persistence
restarted), it is recreated at `0`: whatever the log still holds is sent, duplicates rather than
losses.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import redis

from mmserver.decimal_text import parse_decimal
from mmserver.store import keys
from mmserver.store.events import LAST_STREAM_ID, decode
from mmserver.store.store import _RedisErrors

GROUP = keys.WEBHOOK_GROUP
STREAMS = (keys.EVENT_LOG, keys.WEBHOOK_REPLAY)
EVENT_FIELDS = ("y", "t", "m", "o", "d")
MAX_ERROR_CHARS = 200
REPLAY_CHUNK = 200

# Moves dead letters to the replay stream, each one atomically (never in both, never in neither).
# KEYS: dead, replay. ARGV: replay MAXLEN, then dead-letter ids. Returns {moved, {missing ids}}.
_REPLAY = """
local moved, missing = 0, {}
for i = 2, #ARGV do
  local found = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if #found == 1 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', unpack(found[1][2]))
    redis.call('XDEL', KEYS[1], ARGV[i])
    moved = moved + 1
  else
    missing[#missing + 1] = ARGV[i]
  end
end
return {moved, missing}
"""

# Removes consumers of the group that own no pending entry and have been idle at least ARGV[2]
# ms (only ARGV[3] when it is not ''). Atomic: checked and deleted in one step, so an entry a
# consumer reads meanwhile is never discarded with it (XGROUP DELCONSUMER drops its entries).
# KEYS: the stream. ARGV: group, min idle (ms), only this consumer (or '').
_REMOVE_IDLE_CONSUMERS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return 0 end
local removed = 0
for _, c in ipairs(consumers) do
  local info = {}
  for j = 1, #c, 2 do info[c[j]] = c[j + 1] end
  if info.pending == 0 and info.idle >= tonumber(ARGV[2]) and (ARGV[3] == '' or ARGV[3] == info.name) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info.name)
    removed = removed + 1
  end
end
return removed
"""


# Due retries handed to this consumer. XCLAIM runs only on an entry whose pending row is idle
# enough and whose event is still in its stream: Redis 7.0's XCLAIM drops the row of an entry no
# longer in its stream whatever the row's idle time (6.2 claims it and answers nil), which would
# take it from the replica holding it. Checked and claimed in one step, the same on 6.2 and 7.0.
# KEYS: each entry's stream. ARGV: group, consumer, then each entry's id and min idle (ms).
# Returns per entry: {} (not idle enough, or acknowledged: another replica has it), {'gone'}
# (its event left the stream: acknowledged here, so that one replica alone counts it dropped),
# or {'ok', deliveries before this one, id, fields}. Every row is read before anything is
# written: a missing group (NOGROUP) fails the call before it changed anything.
_CLAIM = """
local rows, out = {}, {}
for k = 1, #KEYS do
  rows[k] = redis.call('XPENDING', KEYS[k], ARGV[1], 'IDLE', ARGV[2 + 2 * k], ARGV[1 + 2 * k], ARGV[1 + 2 * k], 1)
end
for k = 1, #KEYS do
  local id, idle, row = ARGV[1 + 2 * k], ARGV[2 + 2 * k], rows[k]
  if #row == 0 then
    out[k] = {}
  elseif #redis.call('XRANGE', KEYS[k], id, id) == 0 then
    redis.call('XACK', KEYS[k], ARGV[1], id)
    out[k] = { 'gone' }
  else
    local got = redis.call('XCLAIM', KEYS[k], ARGV[1], ARGV[2], idle, id)
    out[k] = got[1] and { 'ok', row[1][4], got[1][1], got[1][2] } or {}
  end
end
return out
"""

# Resets the idle time of an entry this consumer holds, if its row is still this consumer's and
# idle at least the given time (nobody claimed it meanwhile). An entry whose event left the
# stream cannot be held that way (XCLAIM, for the reason above): it is acknowledged here, so no
# other replica retries it or counts it dropped, and the caller's attempt with the event it
# holds is the last. KEYS: the stream. ARGV: group, consumer, min idle (ms), id. Returns 1 (still
# this consumer's), 2 (still this consumer's, its event gone: acknowledged) or 0 (taken).
_KEEP = """
local row = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], ARGV[4], ARGV[4], 1, ARGV[2])
if #row == 0 then return 0 end
if #redis.call('XRANGE', KEYS[1], ARGV[4], ARGV[4]) == 0 then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[4])
  return 2
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'JUSTID')
return 1
"""

# What keep() found (see _KEEP).
KEPT, TAKEN, LAST_ATTEMPT = "kept", "taken", "last attempt"


@dataclass(frozen=True)
class Delivery:
    """One event to deliver: where its entry is (stream, entry id), the event itself, and the
    attempt this delivery is (Redis's delivery count, 1 for the first)."""

    stream: str
    entry_id: str
    event: dict
    attempts: int
    read_at: float  # time.monotonic() when this replica read or claimed it


@dataclass(frozen=True)
class Waiting:
    """A pending entry (from XPENDING): delivered `attempts` times, the last `idle_s` ago."""

    stream: str
    entry_id: str
    attempts: int
    idle_s: float


class NoGroup(Exception):
    """The consumer group is missing (its stream was deleted): create it again."""


def _is_nogroup(error: BaseException | None) -> bool:
    # Anywhere in the message: redis-py prefixes a pipeline's errors with the failing command,
    # and Redis 6.2 a script's with the script's name.
    return isinstance(error, redis.exceptions.ResponseError) and "NOGROUP" in str(error)


class _GroupErrors(_RedisErrors):
    """`with _GroupErrors():` as _RedisErrors, and a missing consumer group raised as NoGroup
    (the worker creates it again)."""

    __slots__ = ()

    def __exit__(self, kind, error, traceback) -> bool:
        if _is_nogroup(error):
            raise NoGroup(str(error)) from None
        return super().__exit__(kind, error, traceback)


class Deliveries:
    def __init__(self, client: redis.Redis, *, consumer: str, max_dead_letters: int) -> None:
        self._client = client
        self._consumer = consumer
        self._max_dead = max_dead_letters
        self._replay = client.register_script(_REPLAY)
        self._remove_idle = client.register_script(_REMOVE_IDLE_CONSUMERS)
        self._claim = client.register_script(_CLAIM)
        self._keep = client.register_script(_KEEP)

    @property
    def consumer(self) -> str:
        return self._consumer

    # --- the delivery worker's steps ---

    def ensure_groups(self, start: str = "$") -> None:
        """Create the group on both streams where it is missing (BUSYGROUP: another replica or
        an earlier start made it)."""
        for stream in STREAMS:
            try:
                with _RedisErrors():
                    self._client.xgroup_create(stream, GROUP, start, mkstream=True)
            except redis.exceptions.ResponseError as error:
                if not str(error).startswith("BUSYGROUP"):
                    raise

    def read_new(self, count: int, block_ms: int) -> list[Delivery]:
        """Entries no consumer has read yet, from both streams (replays first)."""
        with _GroupErrors():
            answer = self._client.xreadgroup(GROUP, self._consumer, {s: ">" for s in STREAMS},
                                             count=count, block=block_ms)
        now = time.monotonic()
        found: list[Delivery] = []
        for stream, entries in _streams(answer):
            for entry_id, fields in entries:
                if fields:
                    found.append(_delivery(stream, entry_id, fields, 1, now))
        found.sort(key=lambda d: d.stream != keys.WEBHOOK_REPLAY)
        return found

    def waiting(self, after: dict[str, str], count: int, min_idle_s: float) -> list[Waiting]:
        """Up to `count` pending entries per stream, idle at least `min_idle_s`, after the id in
        `after` (a cursor per stream, so that a long pending list is scanned in turns)."""
        with self._client.pipeline(transaction=False) as pipe:
            for stream in STREAMS:
                pipe.xpending_range(stream, GROUP, min=f"({after[stream]}" if after.get(stream) else "-",
                                    max="+", count=count, idle=int(min_idle_s * 1000))
            with _GroupErrors():
                answers = pipe.execute()
        return [Waiting(stream, row["message_id"], int(row["times_delivered"]),
                        int(row["time_since_delivered"]) / 1000.0)
                for stream, rows in zip(STREAMS, answers) for row in rows]

    def claim(self, entries: Sequence[Waiting], min_idle: Callable[[Waiting], float]) -> tuple[list[Delivery], list[Waiting]]:
        """Take each entry for this consumer if it is still idle at least `min_idle(entry)`
        seconds (otherwise another replica took it first: left out). Returns the deliveries and
        the entries whose event is no longer in the stream (trimmed: dropped, and acknowledged
        here, so that no other replica counts them too).
        Each XCLAIM adds one to the entry's delivery count: the attempt about to be made, counted
        from the row Redis holds at that moment, not from the earlier XPENDING's."""
        if not entries:
            return [], []
        args: list = [GROUP, self._consumer]
        for entry in entries:
            args += [entry.entry_id, int(min_idle(entry) * 1000)]
        with _GroupErrors():
            answers = self._claim(keys=[entry.stream for entry in entries], args=args)
        now = time.monotonic()
        claimed: list[Delivery] = []
        gone: list[Waiting] = []
        for entry, answer in zip(entries, answers):
            if not answer:
                continue
            if answer[0] == "gone":
                gone.append(entry)
                continue
            _, delivered, entry_id, flat = answer
            fields = dict(zip(flat[::2], flat[1::2]))
            claimed.append(_delivery(entry.stream, entry_id, fields, int(delivered) + 1, now))
        return claimed, gone

    def keep(self, delivery: Delivery, held_s: float) -> str:
        """Reset the idle time of an entry this consumer has held for `held_s` seconds without
        delivering it yet, if nobody claimed it meanwhile (then its idle time would be shorter):
        KEPT. TAKEN: another replica took it; leave it to that one. LAST_ATTEMPT: still this
        consumer's, but its event left the log meanwhile: acknowledged, so the attempt about to
        be made with the event held is its last. The delivery count is unchanged."""
        with _GroupErrors():
            found = self._keep(keys=[delivery.stream],
                               args=[GROUP, self._consumer, max(0, int(held_s * 1000) - 50), delivery.entry_id])
        return {1: KEPT, 2: LAST_ATTEMPT}.get(found, TAKEN)

    def acknowledge(self, entries: Iterable[Delivery | Waiting]) -> None:
        """Done with these entries (delivered, skipped or dropped). Replayed entries are copies:
        they leave their stream too."""
        by_stream: dict[str, list[str]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry.entry_id)
        if not by_stream:
            return
        with self._client.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, GROUP, *ids)
                if stream == keys.WEBHOOK_REPLAY:
                    pipe.xdel(stream, *ids)
            with _RedisErrors():
                pipe.execute()

    def bury(self, delivery: Delivery, error: str) -> str:
        """Make the delivery a dead letter and acknowledge it, in one MULTI (both or neither)."""
        event = delivery.event
        fields = {"i": event["id"], "y": event["type"], "t": event.get("ticket_id", ""),
                  "m": event.get("match_id", ""), "o": event.get("mode", ""),
                  "d": json.dumps(event["data"], separators=(",", ":")),
                  "n": str(delivery.attempts), "e": error[:MAX_ERROR_CHARS]}
        with self._client.pipeline(transaction=True) as pipe:
            pipe.xadd(keys.WEBHOOK_DEAD, fields, maxlen=self._max_dead, approximate=True)
            pipe.xack(delivery.stream, GROUP, delivery.entry_id)
            if delivery.stream == keys.WEBHOOK_REPLAY:
                pipe.xdel(delivery.stream, delivery.entry_id)
            with _RedisErrors():
                dead_id = pipe.execute()[0]
        return dead_id

    def remove_idle_consumers(self, idle_s: float) -> int:
        """Forget consumers (replicas gone for good) idle this long that own nothing."""
        removed = 0
        for stream in STREAMS:
            with _RedisErrors():
                removed += int(self._remove_idle(keys=[stream], args=[GROUP, int(idle_s * 1000), ""]))
        return removed

    def leave(self) -> None:
        """At a graceful stop: remove this consumer if it owns nothing (else others claim its
        entries first, and a later reap removes it)."""
        for stream in STREAMS:
            with _RedisErrors():
                self._remove_idle(keys=[stream], args=[GROUP, 0, self._consumer])

    # --- the control plane ---

    def dead_letters(self, after: str | None, limit: int) -> dict:
        """A page of dead letters, oldest first: {"dead_letters": [...], "next", "total"}."""
        with self._client.pipeline(transaction=False) as pipe:
            if after == LAST_STREAM_ID:  # nothing follows it ('(' past it is no id): none
                start, end = "+", "-"
            else:
                start, end = f"({after}" if after else "-", "+"
            pipe.xrange(keys.WEBHOOK_DEAD, start, end, count=limit)
            pipe.xlen(keys.WEBHOOK_DEAD)
            with _RedisErrors():
                entries, total = pipe.execute()
        letters = [dead_letter(entry_id, fields) for entry_id, fields in entries]
        return {"dead_letters": letters, "next": letters[-1]["id"] if letters else (after or "0-0"),
                "total": total}

    def replay(self, ids: Sequence[str] | None) -> dict:
        """Move dead letters (all of them when `ids` is None) back for delivery: into the
        replay stream, read by the same group, keeping the event's original id."""
        moved, missing = 0, []
        if ids is not None:
            for start in range(0, len(ids), REPLAY_CHUNK):
                count, absent = self._replay_ids(list(ids[start:start + REPLAY_CHUNK]))
                moved, missing = moved + count, missing + absent
            return {"replayed": moved, "not_found": missing}
        with _RedisErrors():
            newest = self._client.xrevrange(keys.WEBHOOK_DEAD, "+", "-", count=1)
        if not newest:
            return {"replayed": 0, "not_found": []}
        # Up to the newest letter at the start only: letters that die again meanwhile (the
        # receiver still down) wait for the next replay instead of looping here.
        last = newest[0][0]
        while True:
            with _RedisErrors():
                chunk = self._client.xrange(keys.WEBHOOK_DEAD, "-", last, count=REPLAY_CHUNK)
            if not chunk:
                break
            count, _absent = self._replay_ids([entry_id for entry_id, _ in chunk])
            moved += count
            if len(chunk) < REPLAY_CHUNK:
                break
        return {"replayed": moved, "not_found": []}

    def _replay_ids(self, ids: list[str]) -> tuple[int, list[str]]:
        with _RedisErrors():
            moved, missing = self._replay(keys=[keys.WEBHOOK_DEAD, keys.WEBHOOK_REPLAY],
                                          args=[self._max_dead, *ids])
        return int(moved), list(missing)

    def discard(self, ids: Sequence[str] | None) -> dict:
        """Delete dead letters for good (all of them when `ids` is None)."""
        with _RedisErrors():
            if ids is None:
                with self._client.pipeline(transaction=True) as pipe:
                    pipe.xlen(keys.WEBHOOK_DEAD)
                    pipe.delete(keys.WEBHOOK_DEAD)
                    count = pipe.execute()[0]
            else:
                count = self._client.xdel(keys.WEBHOOK_DEAD, *ids) if ids else 0
        return {"discarded": int(count)}

    def stats(self) -> dict:
        """Fleet-wide delivery state: pending entries, replays waiting, dead letters, and the
        lag (age of the oldest event of the log not yet delivered), by Redis's clock."""
        with self._client.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.xpending(keys.EVENT_LOG, GROUP)
            pipe.xinfo_groups(keys.EVENT_LOG)
            pipe.xlen(keys.WEBHOOK_REPLAY)
            pipe.xlen(keys.WEBHOOK_DEAD)
            with _RedisErrors():
                now, pending, groups, replays, dead = pipe.execute(raise_on_error=False)
        if isinstance(now, Exception):
            raise now
        now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
        result = {"pending": 0, "replays_waiting": _count(replays), "dead_letters": _count(dead),
                  "oldest_undelivered": None, "lag_s": 0.0, "consumers": 0}
        group = next((g for g in groups if g.get("name") == GROUP), None) if isinstance(groups, list) else None
        if group is None or isinstance(pending, Exception):
            result["group"] = False
            return result
        result["group"] = True
        result["pending"] = int(pending.get("pending") or 0)
        result["consumers"] = int(group.get("consumers") or 0)
        candidates = []
        if pending.get("min"):
            candidates.append(pending["min"])
        with _RedisErrors():
            after = self._client.xrange(keys.EVENT_LOG, f"({group['last-delivered-id']}", "+", count=1)
        if after:
            candidates.append(after[0][0])
        if candidates:
            oldest = min(candidates, key=_id_key)
            result["oldest_undelivered"] = oldest
            result["lag_s"] = max(0.0, (now_ms - int(oldest.split("-", 1)[0])) / 1000.0)
        return result


def dead_letter(entry_id: str, fields: dict) -> dict:
    """One `mm:wh:dead` entry as the control plane shows it."""
    event = decode(fields.get("i", entry_id), fields)
    return {"id": entry_id, "event": event, "attempts": parse_decimal(fields.get("n", "0")) or 0,
            "last_error": fields.get("e", ""), "dead_at": int(entry_id.split("-", 1)[0]) / 1000.0}


def _delivery(stream: str, entry_id: str, fields: dict, attempts: int, now: float) -> Delivery:
    # A replayed entry carries the original event's id in `i`: receivers deduplicate on it.
    event_id = fields.get("i") if stream == keys.WEBHOOK_REPLAY and fields.get("i") else entry_id
    return Delivery(stream, entry_id, decode(event_id, fields), attempts, now)


def _streams(answer) -> list[tuple[str, list]]:
    # RESP2 (what mmserver's clients speak): [[stream, entries], ...]; RESP3: {stream: [entries]}.
    if isinstance(answer, dict):
        return [(stream, value[0] if value else []) for stream, value in answer.items()]
    return [(stream, entries) for stream, entries in (answer or [])]


def _count(value) -> int:
    return int(value) if isinstance(value, int) else 0


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)

