"""Backfills and leaves: a running match's roster changes (docs/BACKFILL.md).

A game server opens a backfill for free places of its match (backfill.lua refuses a team
that would be over-full), withdraws it (backfill_cancel.lua), or reports a player gone
(leave.lua). The tick reads the open backfills of a mode (backfills.lua), plans fills with
matchmaking/backfill.py, and fills them atomically (fill.lua).
"""
from __future__ import annotations

import json
import secrets
from typing import Callable, Mapping, Sequence

import redis

from mmserver.config import ModeConfig
from mmserver.matchmaking.backfill import Fill, OpenBackfill, Rostered, Slot
from mmserver.matchmaking.model import NO_ATTRIBUTES
from mmserver.store import keys, profiles
from mmserver.store.errors import Conflict, NotFound
from mmserver.store.scripts import Scripts
from mmserver.store.tickets import new_id
from mmserver.store.views import backfill_slots as parse_slots, seconds


def slots_text(slots: Sequence[Slot]) -> str:
    """'team:role:count,...' as the scripts keep a backfill's open slots (role '' for none)."""
    return ",".join(f"{s.team}:{s.role or ''}:{s.count}" for s in slots)


def _as_list(value) -> list:
    # cjson encodes an empty Lua table as an object.
    return value if isinstance(value, list) else []


class Backfills:
    def __init__(self, client: redis.Redis, scripts: Scripts, *, retention_s: int,
                 members: Callable[[str, str | None], Mapping[str, str]]) -> None:
        """`members(mode, region)`: ticket id -> queue member from the tick's last read of that
        queue, so a fill names the exact member the tick saw (as claims do)."""
        self._client = client
        self._scripts = scripts
        self._retention_s = retention_s
        self._members = members

    def match_mode(self, match_id: str) -> str:
        """The mode of a match, for checking a request against it; NotFound, or Conflict for a
        loading session (it has no server yet)."""
        mode = self._client.hget(keys.session(match_id), "md")
        if mode is None:
            if self._client.hexists(keys.PENDING_SESSIONS, match_id):
                raise Conflict(f"Match {match_id} is still a loading session: it has no server yet.",
                               title="Match not assigned")
            raise NotFound(f"No match {match_id}.")
        return mode

    def create(self, match_id: str, mode: ModeConfig, slots: Sequence[Slot], ttl_s: float) -> dict:
        backfill_id = new_id()
        roles = ",".join(f"{role}={count}" for role, count in mode.roles)
        reply = self._scripts.call("backfill", [match_id, backfill_id, max(1, int(ttl_s * 1000)),
                                                mode.team_size, roles, slots_text(slots)])
        if reply[0] == "notfound":
            raise NotFound(f"No match {match_id}.")
        if reply[0] == "state":
            raise Conflict(f"Match {match_id} is {reply[1]}: only an assigned match takes backfills.",
                           title="Match not assigned")
        if reply[0] == "full":
            _full, team, role, here, waiting, asked, room = reply
            what = f"team {team}" + (f", role {role!r}," if role else "")
            raise Conflict(f"Backfill would over-fill {what}: {here} player(s) in it, {waiting} place(s) "
                           f"already open in other backfills, {asked} asked for, room for {room}.",
                           title="Team full")
        _ok, bid, created_ms, expires_ms = reply
        return {"backfill_id": bid, "match_id": match_id, "state": "open",
                "slots": parse_slots(slots_text(slots)),
                "created_at": seconds(created_ms), "expires_at": seconds(expires_ms)}

    def cancel(self, match_id: str, backfill_id: str) -> dict:
        reply = self._scripts.call("backfill_cancel", [match_id, backfill_id, self._retention_s])
        if reply[0] == "notfound":
            raise NotFound(f"No backfill {backfill_id} of match {match_id}.")
        _ok, state, reason, open_slots = reply
        view = {"backfill_id": backfill_id, "match_id": match_id, "state": state,
                "slots": parse_slots(open_slots)}
        if reason:
            view["reason"] = reason
        return view

    def leave(self, match_id: str, player_id: str) -> dict:
        reply = self._scripts.call("leave", [match_id, player_id, self._retention_s])
        if reply[0] == "notfound":
            raise NotFound(f"No match {match_id}.")
        if reply[0] == "absent":
            raise NotFound(f"Player {player_id!r} is not in match {match_id}.", title="Player not in match")
        if reply[0] == "state":
            raise Conflict(f"Match {match_id} is {reply[1]}: players leave assigned matches only.",
                           title="Match not assigned")
        _ok, ticket_id, version = reply
        view = {"match_id": match_id, "player_id": player_id, "state": "left", "version": int(version)}
        if ticket_id:
            view["ticket_id"] = ticket_id
        return view

    def open(self, mode: str, limit: int) -> list[OpenBackfill]:
        """The oldest `limit` open backfills of a mode, with their matches' rosters."""
        entries = _as_list(json.loads(self._scripts.call("backfills", [mode, limit])))
        out = []
        for e in entries:
            roster = []
            for r in _as_list(e.get("roster")):
                profile = profiles.decode(r["profile"]) if r.get("profile") else None
                roster.append(Rostered(int(r["team"]), float(r["mmr"]), int(r["size"]),
                                       profile["attributes"] if profile else NO_ATTRIBUTES))
            _roles, chosen = profiles.decode_choices(e.get("mx") or "")
            slots = tuple(Slot(s["team"], s["count"], s.get("role")) for s in parse_slots(e["slots"]))
            out.append(OpenBackfill(e["id"], e["match"], e.get("region") or None, seconds(e["created"]),
                                    seconds(e["expires"]), slots, tuple(roster), chosen or NO_ATTRIBUTES))
        return out

    def fill(self, mode: str, region: str | None, team_size: int, fills: Sequence[Fill]) -> list[str]:
        """One script call for the batch; each fill all-or-nothing. Per fill: '' when done,
        else why not (fill.lua)."""
        if not fills:
            return []
        known = self._members(mode, region)
        args: list = [mode, region or "", team_size, secrets.token_hex(16), self._retention_s, len(fills)]
        for f in fills:
            # A ticket missing from the last read cannot be named by its member: it fails.
            args += [f.backfill_id, f.ticket_id, known.get(f.ticket_id, f.ticket_id), f.team, ",".join(f.roles)]
        return list(self._scripts.call("fill", args))
