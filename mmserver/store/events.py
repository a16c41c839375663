"""The event log: reading the `mm:ev` stream the scripts append to (SPEC "Events (v2)").

Entries are written by the Lua scripts only (lib/util.lua `emit`), in the call that makes the
transition; this module turns them into the events of the contract and pages through them.
An event id is its Redis stream id ('<ms>-<seq>'): ids grow in log order and the first part is
the time the transition happened, by Redis's clock.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Collection, Mapping

import redis

from mmserver.store import keys

_STREAM_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_PART_MAX = 2 ** 64 - 1  # each part of a stream id is an unsigned 64-bit number
LAST_STREAM_ID = f"{_PART_MAX}-{_PART_MAX}"  # nothing can ever follow it


def is_stream_id(value: Any) -> bool:
    """Whether `value` is an id Redis takes for a stream entry, '<ms>-<seq>': what a client may
    send as an event or dead-letter cursor. (A part past 64 bits, or non-ASCII digits, which
    a plain \\d would take, made XRANGE fail: a 500 instead of a 400.)"""
    match = _STREAM_ID.fullmatch(value) if isinstance(value, str) else None
    return match is not None and int(match[1]) <= _PART_MAX and int(match[2]) <= _PART_MAX

# Every type a script emits (scripts/lib/ and the scripts; tests/store/test_event_log.py checks the
# list against the sources), for documentation and for validating filters.
EVENT_TYPES = (
    "ticket.queued", "ticket.matched", "ticket.accepted", "ticket.requeued", "ticket.assigned",
    "ticket.finished", "ticket.cancelled", "ticket.expired",
    "match.accepted", "match.dissolved", "match.assigned", "match.player_left", "match.finished",
    "backfill.created", "backfill.filled", "backfill.cancelled", "backfill.expired",
)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def decode(entry_id: Any, fields: Mapping[Any, Any]) -> dict:
    """One stream entry as the contract's event: {"id", "type", "at", "ticket_id"?,
    "match_id"?, "mode"?, "data"}."""
    values = {_text(name): _text(value) for name, value in fields.items()}
    event_id = _text(entry_id)
    event: dict[str, Any] = {"id": event_id, "type": values.get("y", ""),
                             "at": int(event_id.split("-", 1)[0]) / 1000.0}
    for field, name in (("t", "ticket_id"), ("m", "match_id"), ("o", "mode")):
        if values.get(field):
            event[name] = values[field]
    try:
        data = json.loads(values.get("d") or "{}")
    except ValueError:
        data = {}
    event["data"] = data if isinstance(data, dict) else {}
    return event


@dataclass(frozen=True)
class Page:
    events: list[dict]
    next: str  # the cursor to pass as `after` next time


class EventLog:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def read(self, after: str | None, *, limit: int, types: Collection[str] = (),
             modes: Collection[str] = (), scan: int = 10_000) -> Page:
        """Events after `after` (exclusive; None: from the oldest kept), at most `limit`, only
        of `types` and `modes` when given. At most `scan` entries are looked at per call, so
        a filter that matches little costs a bounded amount; `next` then moves past them."""
        cursor = after or "0-0"
        if cursor == LAST_STREAM_ID:  # '(' past it is no id at all: XRANGE would refuse it
            return Page([], cursor)
        found: list[dict] = []
        scanned = 0
        while len(found) < limit and scanned < scan:
            batch = min(1000, scan - scanned) if (types or modes) else limit - len(found)
            entries = self._client.xrange(keys.EVENT_LOG, f"({cursor}", "+", count=batch)
            if not entries:
                break
            for entry_id, fields in entries:
                cursor = _text(entry_id)
                scanned += 1
                event = decode(entry_id, fields)
                if (not types or event["type"] in types) and (not modes or event.get("mode") in modes):
                    found.append(event)
                    if len(found) >= limit:
                        break
            if len(entries) < batch:
                break
        return Page(found, cursor)

    def last_id(self) -> str:
        """The newest event's id ('0-0' when the log is empty): a cursor for "from now on"."""
        newest = self._client.xrevrange(keys.EVENT_LOG, "+", "-", count=1)
        return _text(newest[0][0]) if newest else "0-0"

