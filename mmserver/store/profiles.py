"""A ticket's match profile: what the rules of its mode read besides MMR and size.

Attributes, measured latencies, offered roles, a fixed region (in a mode that picks regions by
latency, the ticket's `region` is a constraint, not its queue) and, for match functions, the
player ids. Stored as compact JSON in the ticket's record and at the end of its queue member,
so the queue's read still gives the matcher everything. Every string in it was validated to
hold no '|' (the record's separator), so the JSON never does either. A plain ticket has no
profile ('') and its member stays `id|mmr|size|enqueued_ms`.
"""
from __future__ import annotations

import json
import re
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from mmserver.matchmaking.model import NO_ATTRIBUTES, NO_LATENCIES, QueuedTicket

_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


def encode(*, attributes: Mapping[str, Any] = NO_ATTRIBUTES, latencies: Mapping[str, float] = NO_LATENCIES,
           roles: Sequence[Sequence[str]] = (), region: str | None = None,
           players: Sequence[str] = ()) -> str:
    document: dict[str, Any] = {}
    if attributes:
        document["a"] = {name: list(value) if isinstance(value, tuple) else value
                         for name, value in attributes.items()}
    if latencies:
        document["l"] = dict(latencies)
    if roles:
        document["o"] = [list(offered) for offered in roles]
    if region:
        document["g"] = region
    if players:
        document["p"] = list(players)
    if not document:
        return ""
    text = _DUMPS(document)
    if "|" in text:  # validation makes this impossible; a record with it would be unreadable
        raise ValueError("a match profile may not hold '|'")
    return text


def decode(text: str) -> dict[str, Any]:
    """{'attributes', 'latencies', 'roles', 'region', 'players'} ('' decodes to empty values)."""
    document = json.loads(text) if text else {}
    attributes = {name: tuple(value) if isinstance(value, list) else value
                  for name, value in document.get("a", {}).items()}
    return {
        "attributes": attributes,
        "latencies": document.get("l", {}),
        "roles": tuple(tuple(offered) for offered in document.get("o", ())),
        "region": document.get("g"),
        "players": tuple(document.get("p", ())),
    }


def queued_ticket(ticket_id: str, mmr: float, size: int, enqueued_at: float, profile: str) -> QueuedTicket:
    if not profile:
        return QueuedTicket(ticket_id, mmr, size, enqueued_at)
    p = decode(profile)
    return QueuedTicket(ticket_id, mmr, size, enqueued_at,
                        MappingProxyType(p["attributes"]) if p["attributes"] else NO_ATTRIBUTES,
                        MappingProxyType(p["latencies"]) if p["latencies"] else NO_LATENCIES,
                        p["region"], p["roles"], p["players"])


# What the rules chose for a match: the region (kept apart, as the session's region), each
# player's role and the values of `overlap` rules. Kept as the session's `mx`.

def encode_choices(region: str | None, roles: Mapping[str, str], attributes: Mapping[str, str]) -> str:
    """'' for a plain match, else 'region|json' as claim.lua takes it; `roles` by player id."""
    if not region and not roles and not attributes:
        return ""
    document: dict[str, Any] = {}
    if roles:
        document["r"] = roles if type(roles) is dict else dict(roles)
    if attributes:
        document["a"] = attributes if type(attributes) is dict else dict(attributes)
    text = _DUMPS(document) if document else ""
    if "|" in text:
        raise ValueError("match choices may not hold '|'")
    return f"{region or ''}|{text}"


# Text JSON writes as it is: printable ASCII but the quote and the backslash, and '|' (the
# record separator) aside.
_VERBATIM = re.compile(r"[ !#-\[\]-{}~]*")


def encode_roles(region: str | None, players: Sequence[str], roles: Sequence[str],
                 attributes: Mapping[str, str]) -> str:
    """encode_choices(region, dict(zip(players, roles)), attributes), the same text, written
    out directly (1.8 against 3.0 us for ten players; a tick encodes one per match) when there
    are no attributes, no player repeats, and every player id and role is text JSON writes as
    it is: the API's and the configuration's alphabets always are."""
    if (attributes or not players or len(roles) != len(players) or len(set(players)) != len(players)
            or not _VERBATIM.fullmatch("".join(players) + "".join(roles))):
        return encode_choices(region, dict(zip(players, roles)), attributes)
    pairs = ",".join([f'"{player}":"{role}"' for player, role in zip(players, roles)])
    return f'{region or ""}|{{"r":{{{pairs}}}}}'


def decode_choices(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(player id -> role, attribute -> chosen value) from a session's mx."""
    document = json.loads(text) if text else {}
    return document.get("r", {}), document.get("a", {})
