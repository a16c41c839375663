"""Lua scripts: loaded once with SCRIPT LOAD, called with EVALSHA, reloaded after NoScriptError.

Each script is the shared library (scripts/lib/*.lua, LIB_MODULES in order) followed by
scripts/<name>.lua (Redis 6.2 has no function libraries). redis-py's Script objects are not
used: in a pipeline they send SCRIPT EXISTS on every execute, an extra round trip.

Every request makes one script call, so EVALSHA goes straight through a pooled connection
(send, read the reply) when the client is configured not to retry and its pool has the
stale-reply guard (mmserver's store client, see redis_replies.py):
redis-py's command path around that adds a retry wrapper, observability hooks and a
per-command HIMPORT check, ~5 us of GIL-held time a request. A client that retries keeps
redis-py's path, retries included.
"""
from __future__ import annotations

import logging
import re
import threading
from collections import deque
from importlib import resources
from typing import Any, Mapping, Sequence

import redis

from mmserver.redis_replies import ReplyGuardPool
from mmserver.store import keys

logger = logging.getLogger(__name__)

NAMES = (
    "create", "read", "cancel", "accept", "decline", "claim", "deadlines", "allocate",
    "finish", "heartbeat", "replica_record", "replica_list", "unlock", "deregister", "match",
    "player", "release", "why", "backfill", "backfill_cancel", "backfills", "fill", "leave", "refresh",
)


# The shared library, one concept a file, in this order (a definition refers only to earlier
# ones): key names and constants, helpers, the record codec, lazy claims, transitions, views.
LIB_MODULES = ("keys", "util", "codec", "claims", "transitions", "views")


def _source(name: str) -> str:
    return resources.files("mmserver.store").joinpath("scripts", f"{name}.lua").read_text("utf-8")


def library() -> str:
    """The shared library: scripts/lib/<module>.lua for each of LIB_MODULES, in order."""
    folder = resources.files("mmserver.store").joinpath("scripts", "lib")
    return "\n".join(folder.joinpath(f"{module}.lua").read_text("utf-8") for module in LIB_MODULES)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEFINITION = re.compile(r"^local (?:function )?([A-Za-z_][A-Za-z0-9_]*)")


def _chunks(source: str) -> list[tuple[str | None, str]]:
    """The top-level definitions of a library (library(), or the key-name prelude), in order:
    (name, text), or (None, text) for a statement that is not a definition (kept always).

    A definition starts at a line `local NAME ...` or `local function NAME` in column 0 and
    runs until the next line in column 0 that is not its closing `end`; comments and blank
    lines are dropped. The library keeps to this shape (function bodies are indented)."""
    out: list[list] = []
    for line in source.splitlines():
        if not line.strip() or line.startswith("--"):
            continue
        if line[0] in " \t" or line == "end":
            if out:
                out[-1][1].append(line)
            continue
        match = _DEFINITION.match(line)
        out.append([match.group(1) if match else None, [line]])
    return [(name, "\n".join(lines)) for name, lines in out]


def _code(text: str) -> str:
    """`text` without its Lua comments (`--` outside a quoted string, to the end of the line),
    so that a word in a comment keeps no definition alive. The scripts use no long strings or
    long comments ([[...]])."""
    out = []
    for line in text.splitlines():
        quote = None
        cut = len(line)
        i = 0
        while i < len(line):
            c = line[i]
            if quote:
                if c == "\\":
                    i += 1
                elif c == quote:
                    quote = None
            elif c in "'\"":
                quote = c
            elif line.startswith("--", i):
                cut = i
                break
            i += 1
        out.append(line[:cut])
    return "\n".join(out)


_TOKEN = re.compile(r"""'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|--[^\n]*|[A-Za-z_][A-Za-z0-9_]*""")


def inline(text: str, constants: Mapping[str, str]) -> str:
    """`text` with each name of `constants` (an identifier outside strings and comments)
    replaced by its literal.

    The key names and settings used to be `local` lines before the library: every EVALSHA
    ran them, and each function using one captured it as an upvalue, which Lua 5.1 looks up
    in a list that grows with every captured local (measured: 0.4-1.4 µs a call). As
    literals they cost nothing until used."""
    return _TOKEN.sub(lambda m: constants.get(m.group(0), m.group(0)), text)


def assemble(prelude: str, lib: str, body: str) -> str:
    """The script as Redis runs it: the definitions of the prelude and the library that `body`
    uses, directly or through each other, in their order, then `body`.

    Redis 6.2 has no function libraries: whatever precedes a script's body runs on every
    EVALSHA (each `local function` builds a closure), and the whole library costs about
    8 µs a call. Keeping only what the script can reach cuts most of it. A name is taken as
    used wherever it appears in the code (in a string too): that can only keep a definition
    that is not needed, never drop one that is."""
    chunks = _chunks(prelude) + _chunks(lib)
    defined = {name for name, _ in chunks if name is not None}
    uses = [set(_IDENTIFIER.findall(_code(text))) & defined for _, text in chunks]
    needed = set(_IDENTIFIER.findall(_code(body))) & defined
    # Definitions only refer to earlier ones (Lua locals): one pass from the end suffices.
    for (name, _text), used in zip(reversed(chunks), reversed(uses)):
        if name in needed:
            needed |= used - {name}
    kept = [text for name, text in chunks if name is None or name in needed]
    return "\n".join(kept) + "\n" + body


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
        # Key names and settings (keys.py, the one place they are spelled) written into the
        # shared library and each script, which then carries what it uses of the library.
        constants = keys.lua_constants({**DEFAULT_SETTINGS, **(settings or {})})
        lib = inline(library(), constants)
        self._sources = {name: assemble("", lib, inline(_source(name), constants)) for name in NAMES}
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

    def calls(self, name: str, width: int) -> Calls:
        """Calls of script `name` with replies read later: see Calls."""
        return Calls(self, name, width)


class Calls:
    """Calls of one script sent before their replies are read, for a caller with work to do
    meanwhile (the tick: the matcher forms the next claim batch while Redis runs the last).
    At most `width` are in flight, each on a pooled connection of its own, so Redis serves
    other clients between them as it would between separate clients' calls; replies come back
    in the order sent. One thread only: it replaces a pool of threads that waited on the
    replies and, holding the GIL for each step of a call, took turns with the caller.

    A connection is taken from the pool for each call and given back once its reply is read,
    so the pool's checks apply to every call, as to Scripts.call's (a connection Redis closed
    while the caller worked is reconnected). A reply NOSCRIPT (SCRIPT FLUSH, or a Redis
    restarted between two calls) means that call did not run: it is made again once through
    Scripts.call, which loads the script. A connection still owed a reply when a read fails or
    at close() is closed here, never reused, whether or not its pool has the stale-reply guard.
    These calls are never retried, even on a client configured to retry: a failure is raised
    to the caller (the tick ends; the next one reads the queue again, and a claim re-checks
    every ticket it takes)."""

    def __init__(self, scripts: Scripts, name: str, width: int) -> None:
        self._scripts = scripts
        self._name = name
        self._width = max(1, width)
        self._pool = scripts._client.connection_pool
        self._waiting: deque[tuple[Any, Sequence[Any]]] = deque()  # (connection, args), oldest first

    @property
    def in_flight(self) -> int:
        return len(self._waiting)

    def send(self, args: Sequence[Any]) -> None:
        """Sends one call; the caller receives the oldest reply first when `width` are in flight."""
        if len(self._waiting) >= self._width:
            raise RuntimeError(f"{self._width} calls in flight: receive one first")
        connection = None
        try:
            connection = self._pool.get_connection()
            connection.send_command("EVALSHA", self._scripts._sha(self._name), 0, *args)
            self._waiting.append((connection, args))
        except BaseException:
            if connection is not None:
                connection.disconnect()  # a command sent in part, or not at all: never reused
                self._pool.release(connection)
            raise

    def receive(self) -> Any:
        """The reply of the oldest call in flight (its error raised, as Scripts.call would)."""
        connection, args = self._waiting[0]
        try:
            return connection.read_response()
        except redis.exceptions.NoScriptError:
            pass  # the error reply was read whole; made again below, the connection given back
        except redis.exceptions.ResponseError:
            raise  # the script's own error, read whole: the connection stays good
        except BaseException:
            connection.disconnect()  # a reply read in part, or not at all
            raise
        finally:
            self._waiting.popleft()
            self._pool.release(connection)
        logger.info("reloading Lua script %s", self._name)
        self._scripts._shas.pop(self._name, None)
        return self._scripts.call(self._name, args)

    def close(self) -> None:
        """Gives back every connection; one still owed a reply is closed first."""
        while self._waiting:
            connection, _ = self._waiting[0]
            try:
                connection.disconnect()
            finally:
                self._waiting.popleft()
                self._pool.release(connection)
