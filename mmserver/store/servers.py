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

from mmserver.store.errors import NotFound
from mmserver.store.scripts import Scripts


class Servers:
    def __init__(self, scripts: Scripts, *, retention_s: int) -> None:
        self._scripts = scripts
        self._retention_s = retention_s

    def heartbeat(self, server_id: str, address: str) -> dict:
        sid, addr, state, match_id = self._scripts.call("heartbeat", [server_id, address])
        result = {"server_id": sid, "address": addr, "state": state}
        if match_id:
            result["match_id"] = match_id
        return result

    def finish(self, match_id: str) -> dict:
        reply = self._scripts.call("finish", [match_id, self._retention_s])
        if reply[0] == "notfound":
            raise NotFound(f"No match {match_id}.")
        return {"match_id": match_id, "status": reply[1],
                "players": reply[2].split(",") if reply[2] else []}
