"""Dedicated servers: two providers feeding one free pool in Redis.

- StaticPool: the addresses from the configuration; the address is the server id; always
  healthy (score +inf in the free pool). The allocate script creates them if missing, so a
  flushed or restarted Redis gets them back on the next tick.
- Registered servers: PUT /v1/servers/{id} registers or refreshes (heartbeat_server); the free
  pool's score is the last heartbeat, and allocation only takes a server whose heartbeat is
  younger than heartbeat_ttl_s. A busy registered server that goes silent has its match ended
  ("server lost") by the deadline pass, so its players can queue again.
Allocation itself is sessions.Sessions.allocate: one script picks a server and assigns a match.
"""
from __future__ import annotations

from mmserver.store.errors import Conflict, NotFound
from mmserver.store.scripts import Scripts
from mmserver.store.views import match_view


class Servers:
    def __init__(self, scripts: Scripts, *, retention_s: int) -> None:
        self._scripts = scripts
        self._retention_s = retention_s

    def heartbeat(self, server_id: str, address: str, region: str | None = None,
                  sent: str | None = None) -> dict:
        """`address` canonical (mmserver/addresses.py); `sent` as the server wrote it."""
        reply = self._scripts.call("heartbeat", [server_id, address, region or "", sent or address])
        if reply[0] == "clash":
            raise Conflict(f"The address {address} is held by another server ({reply[1]}): "
                           "one address is one server.", title="Address in use")
        if reply[0] == "static":
            raise Conflict(f"{server_id} is a static server of the configuration file; it does "
                           "not register or heartbeat.", title="Static server")
        if reply[0] == "moving":
            raise Conflict(f"{server_id} hosts match {reply[1]} at its registered address; it may "
                           "change address only while free.", title="Server busy")
        _ok, sid, addr, state, match_id, region_name, leaving, version = reply
        result = {"server_id": sid, "address": addr, "region": region_name or None, "state": state}
        if match_id:
            result["match_id"] = match_id
            # The roster's version: it goes up when a player joins (backfill) or leaves.
            result["match_version"] = int(version)
        if leaving:
            result["leaving"] = True  # deregistered: leaves the registry when its match ends
        return result

    def deregister(self, server_id: str) -> dict:
        reply = self._scripts.call("deregister", [server_id])
        if reply[0] == "notfound":
            raise NotFound(f"No registered server {server_id}.")
        if reply[0] == "static":
            raise Conflict(f"{server_id} is a static server: remove it from the configuration file.",
                           title="Static server")
        if reply[0] == "leaving":
            return {"server_id": server_id, "state": "leaving", "match_id": reply[1]}
        return {"server_id": server_id, "state": "removed"}

    def finish(self, match_id: str, reason: str = "match finished") -> dict:
        reply = self._scripts.call("finish", [match_id, self._retention_s, reason])
        if reply[0] == "notfound":
            raise NotFound(f"No match {match_id}.")
        if reply[0] == "loading":
            raise Conflict(f"Match {match_id} is not running yet ({reply[1]}): no server plays it. "
                           "Releasing its players ends it.", title="Match not running")
        players = [p for team in (reply[2] or "").split(";") for p in team.split(",") if p]
        return {"match_id": match_id, "status": reply[1], "players": players}

    def match(self, match_id: str) -> dict:
        reply = self._scripts.call("match", [match_id])
        if reply[0] == "notfound":
            raise NotFound(f"No match {match_id}.")
        return match_view(match_id, reply)
