"""Turning what the scripts return into the JSON-ready views of the contract."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

from mmserver.store import profiles

TERMINAL = frozenset({"finished", "cancelled", "expired"})


def seconds(ms: str) -> float:
    return int(ms) / 1000.0


def number(text: str) -> int | float:
    """MMR as the client sent it: an integer stays an integer."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def mmr_text(mmr: float) -> str:
    """The one canonical spelling of an MMR, stored in the ticket and in its queue member."""
    value = float(mmr)
    return str(int(value)) if value.is_integer() else repr(value)


def split_teams(text: str) -> list[list[str]]:
    """'a,b;c' -> [['a', 'b'], ['c']] (an emptied team stays, as [])."""
    if not text:
        return []
    return [team.split(",") if team else [] for team in text.split(";")]


def join_token_sha256(join_token: str) -> str:
    return hashlib.sha256(join_token.encode("ascii")).hexdigest()


ROSTER_FIELDS = 9  # per ticket in match.lua's reply
MATCH_FIELDS = 12  # before the roster in match.lua's reply


def _attributes_json(attributes: dict) -> dict:
    return {name: list(value) if isinstance(value, tuple) else value for name, value in attributes.items()}


def backfill_slots(text: str) -> list[dict]:
    """A backfill's open slots ('team:role:count,...', role '' for none) as the API shows
    them: [{"team", "count", "role"?}]."""
    out = []
    for entry in (text or "").split(","):
        if entry:
            team, role, count = entry.split(":")
            out.append({"team": int(team), "count": int(count), **({"role": role} if role else {})})
    return out


def _backfill_json(entry: dict) -> dict:
    slots = backfill_slots(entry.get("slots") or "")
    return {"backfill_id": entry["id"], "slots": slots, "created_at": seconds(entry["created"]),
            "expires_at": seconds(entry["expires"])}


def match_view(match_id: str, reply: Sequence[Any]) -> dict:
    """reply = ['ok', state, mode, region, server id, address, assigned_at, reason, team count,
    choices, version, open backfills (JSON), then ROSTER_FIELDS per ticket]."""
    (_ok, state, mode, region, server_id, address, assigned_ms, reason, team_count, choices, version,
     backfills) = reply[:MATCH_FIELDS]
    roles, chosen = profiles.decode_choices(choices)
    teams: list[dict] = [{"players": []} for _ in range(int(team_count))]
    rest = reply[MATCH_FIELDS:]
    for i in range(0, len(rest), ROSTER_FIELDS):
        team, ticket_id, status, player, party, mmr, join, profile, left = rest[i:i + ROSTER_FIELDS]
        attributes = _attributes_json(profiles.decode(profile)["attributes"]) if profile else {}
        gone = set(left.split(",")) if left else set()
        for member in [player, *(party.split(",") if party else [])]:
            if member in gone:
                continue  # a party member who left (docs/BACKFILL.md)
            teams[int(team)]["players"].append({
                "player_id": member,
                "ticket_id": ticket_id,
                "mmr": number(mmr) if mmr else None,
                "role": roles.get(member),
                "attributes": attributes,
                "join_token_sha256": join_token_sha256(join) if join else None,
            })
    view: dict[str, Any] = {
        "match_id": match_id,
        "mode": mode,
        "region": region or None,
        "state": state,
        "server": address or None,
        "server_id": server_id or None,
        "created_at": seconds(assigned_ms) if assigned_ms else None,
        "teams": teams,
        "attributes": chosen,
        # The roster's version: it goes up each time a player joins (backfill) or leaves.
        "version": int(version or 1),
        "backfills": [_backfill_json(b) for b in (json.loads(backfills) if backfills else [])],
    }
    if reason:
        view["reason"] = reason
    return view


def ticket_view(reply: Sequence[Any]) -> dict:
    """reply = ['ok', field, value, ...] from lib/views.lua's view()."""
    f = {reply[i]: reply[i + 1] for i in range(1, len(reply) - 1, 2)}
    status = f["s"]
    view: dict[str, Any] = {
        "ticket_id": f["id"],
        "status": status,
        "version": int(f["v"]),
        "mode": f["m"],
        "player_id": f["p"],
        "party": f["y"].split(",") if f.get("y") else [],
        "mmr": number(f["r"]),
        "region": f.get("g") or None,
        "enqueued_at": seconds(f["e"]),
        "updated_at": seconds(f.get("u") or f["e"]),
    }
    if f.get("a"):
        profile = profiles.decode(f["a"])
        if profile["region"]:
            view["region"] = profile["region"]
        if profile["attributes"]:
            view["attributes"] = _attributes_json(profile["attributes"])
        if profile["latencies"]:
            view["latencies"] = profile["latencies"]
        if profile["roles"]:
            view["roles"] = [list(offered) for offered in profile["roles"]]
    if status == "queued":
        # Completed by the caller, which knows the mode's rules (Tickets.with_matching).
        view["matching"] = {"blocked_by": f.get("@why")}
    state = f.get("@st")
    if status == "matched" and state in ("accepting", "allocating"):
        accepting = state == "accepting"
        view["session"] = {
            "session_id": f["x"],
            "accept_deadline": seconds(f["@dl"]) if accepting and f.get("@dl") else None,
            "accepted": f.get("c") == "1" or not accepting,
            "state": state,
        }
    if status in ("assigned", "finished") and f.get("@ad"):
        teams = split_teams(f.get("@pl", ""))
        view["assignment"] = {
            "match_id": f["x"],
            "server": f["@ad"],
            "region": f.get("@rg") or None,
            "players": [player for team in teams for player in team],
            "teams": teams,
        }
        if f.get("@mx"):
            roles, chosen = profiles.decode_choices(f["@mx"])
            # Every player's role: each client learns the whole line-up, as the server does.
            # The choices keep the roles of players who left the match: the roster does not.
            on_roster = set(view["assignment"]["players"])
            roles = {player: role for player, role in roles.items() if player in on_roster}
            if roles:
                view["assignment"]["roles"] = roles
            if chosen:
                view["assignment"]["attributes"] = chosen
        if status == "assigned" and f.get("j"):
            # Secret: only the ticket's holders see it; the game server gets its SHA-256.
            view["assignment"]["join_token"] = f["j"]
    if status in TERMINAL:
        view["reason"] = f.get("w", "")
    return view
