"""Turning what the scripts return into the JSON-ready views of the contract."""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

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


ROSTER_FIELDS = 7  # per ticket in match.lua's reply


def match_view(match_id: str, reply: Sequence[Any]) -> dict:
    """reply = ['ok', state, mode, region, server id, address, assigned_at, reason, team count,
    then ROSTER_FIELDS per ticket]."""
    _ok, state, mode, region, server_id, address, assigned_ms, reason, team_count = reply[:9]
    teams: list[dict] = [{"players": []} for _ in range(int(team_count))]
    rest = reply[9:]
    for i in range(0, len(rest), ROSTER_FIELDS):
        team, ticket_id, status, player, party, mmr, join = rest[i:i + ROSTER_FIELDS]
        for member in [player, *(party.split(",") if party else [])]:
            teams[int(team)]["players"].append({
                "player_id": member,
                "ticket_id": ticket_id,
                "mmr": number(mmr) if mmr else None,
                "role": None,
                "attributes": {},
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
        "attributes": {},
    }
    if reason:
        view["reason"] = reason
    return view


def ticket_view(reply: Sequence[Any]) -> dict:
    """reply = ['ok', field, value, ...] from lib.lua's view()."""
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
        if status == "assigned" and f.get("j"):
            # Secret: only the ticket's holders see it; the game server gets its SHA-256.
            view["assignment"]["join_token"] = f["j"]
    if status in TERMINAL:
        view["reason"] = f.get("w", "")
    return view
