"""Turning what the scripts return into the JSON-ready views of the contract."""
from __future__ import annotations

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
        view["assignment"] = {
            "match_id": f["x"],
            "server": f["@ad"],
            "players": f["@pl"].split(",") if f.get("@pl") else [],
        }
    if status in TERMINAL:
        view["reason"] = f.get("w", "")
    return view
