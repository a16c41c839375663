"""Lua scripts: loaded once with SCRIPT LOAD, called with EVALSHA, reloaded after NoScriptError.

Each script is scripts/lib.lua followed by scripts/<name>.lua (Redis 6.2 has no function
libraries). redis-py's Script objects are not used: in a pipeline they send SCRIPT EXISTS on
every execute, an extra round trip.

Every request makes one script call, so EVALSHA goes straight through a pooled connection
(send, read the reply) when the client is configured not to retry and its pool has the
stale-reply guard (mmserver's store client, see redis_client.py):
redis-py's command path around that adds a retry wrapper, observability hooks and a
per-command HIMPORT check, ~5 us of GIL-held time a request. A client that retries keeps
redis-py's path, retries included.
"""
from __future__ import annotations

import logging
import threading
from importlib import resources
from typing import Any, Mapping, Sequence

import redis

from mmserver.redis_client import ReplyGuardPool
from mmserver.store import keys

logger = logging.getLogger(__name__)

NAMES = (
    "create", "read", "cancel", "accept", "decline", "claim", "deadlines", "allocate",
    "finish", "heartbeat", "replica_record", "replica_list", "unlock", "deregister", "match",
    "player", "release", "why", "backfill", "backfill_cancel", "backfills", "fill", "leave", "refresh",
)


def _source(name: str) -> str:
    return resources.files("mmserver.store").joinpath("scripts", f"{name}.lua").read_text("utf-8")


def _retries(client: redis.Redis) -> bool:
    """Whether the client's connections retry a failed command (redis-py: only if given a
    `retry`, `retry_on_error` or `retry_on_timeout`; else Retry(NoBackoff(), 0))."""
    options = client.connection_pool.connection_kwargs
    retry = options.get("retry")
    return bool((retry is not None and retry.get_retries() != 0) or options.get("retry_on_error")
                or options.get("retry_on_timeout"))


# What the scripts need from the configuration, as Lua constants (see Scripts(settings=)).
DEFAULT_SETTINGS = {"EVENT_MAX_LEN": 1_000_000, "EVENT_MAX_AGE_MS": 3_600_000}


class Scripts:
    def __init__(self, client: redis.Redis, settings: Mapping[str, int] | None = None) -> None:
        """`settings`: numeric constants the scripts read (DEFAULT_SETTINGS's names); replicas
        with different settings load different scripts, each with its own SHA."""
        self._client = client
        # Key names first (keys.py, the one place they are spelled), then the shared library.
        lib = keys.lua_prelude({**DEFAULT_SETTINGS, **(settings or {})}) + _source("lib")
        self._sources = {name: lib + "\n" + _source(name) for name in NAMES}
        self._shas: dict[str, str] = {}
        self._lock = threading.Lock()
        # Only on a pool with the stale-reply guard (every client from redis_client.connect).
        direct = (client.connection is None and not _retries(client)
                  and isinstance(client.connection_pool, ReplyGuardPool))
        self._pool: redis.ConnectionPool | None = client.connection_pool if direct else None

    def _sha(self, name: str) -> str:
        sha = self._shas.get(name)
        if sha is None:
            with self._lock:
                sha = self._client.script_load(self._sources[name])
                self._shas[name] = sha
        return sha

    def call(self, name: str, args: Sequence[Any]) -> Any:
        try:
            return self._evalsha(self._sha(name), args)
        except redis.exceptions.NoScriptError:
            # Redis restarted or SCRIPT FLUSH: load again, once.
            logger.info("reloading Lua script %s", name)
            self._shas.pop(name, None)
            return self._evalsha(self._sha(name), args)

    def _evalsha(self, sha: str, args: Sequence[Any]) -> Any:
        pool = self._pool
        if pool is None:
            return self._client.evalsha(sha, 0, *args)
        connection = pool.get_connection()
        try:
            # Both calls disconnect the connection on a socket error (the pool then reconnects
            # it). A reply left unread (an exception arriving between the send and the read) is
            # the pool's stale-reply guard's to handle: it closes the connection at release.
            connection.send_command("EVALSHA", sha, 0, *args)
            return connection.read_response()
        finally:
            pool.release(connection)

    def load_all(self) -> None:
        for name in NAMES:
            self._sha(name)
