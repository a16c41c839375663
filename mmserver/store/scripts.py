"""Lua scripts: loaded once with SCRIPT LOAD, called with EVALSHA, reloaded after NoScriptError.

Each script is scripts/lib.lua followed by scripts/<name>.lua (Redis 6.2 has no function
libraries). redis-py's Script objects are not used: in a pipeline they send SCRIPT EXISTS on
every execute, an extra round trip.
"""
from __future__ import annotations

import logging
import threading
from importlib import resources
from typing import Any, Sequence

import redis

logger = logging.getLogger(__name__)

NAMES = (
    "create", "read", "cancel", "accept", "decline", "claim", "deadlines", "allocate",
    "finish", "heartbeat", "replica_record", "replica_list", "unlock",
)


def _source(name: str) -> str:
    return resources.files("mmserver.store").joinpath("scripts", f"{name}.lua").read_text("utf-8")


class Scripts:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        lib = _source("lib")
        self._sources = {name: lib + "\n" + _source(name) for name in NAMES}
        self._shas: dict[str, str] = {}
        self._lock = threading.Lock()

    def _sha(self, name: str) -> str:
        sha = self._shas.get(name)
        if sha is None:
            with self._lock:
                sha = self._client.script_load(self._sources[name])
                self._shas[name] = sha
        return sha

    def call(self, name: str, args: Sequence[Any]) -> Any:
        try:
            return self._client.evalsha(self._sha(name), 0, *args)
        except redis.exceptions.NoScriptError:
            # Redis restarted or SCRIPT FLUSH: load again, once.
            logger.info("reloading Lua script %s", name)
            self._shas.pop(name, None)
            return self._client.evalsha(self._sha(name), 0, *args)

    def load_all(self) -> None:
        for name in NAMES:
            self._sha(name)
