"""The load: players and dedicated servers driven at a fixed request rate, plus held long-polls.

Open loop: a pacer thread releases one request slot every 1/rate seconds whatever the answers
take, and a pool of client threads (each with its own keep-alive connection) runs them. Each
slot goes to the most urgent piece of work: a server whose heartbeat is due, a matched ticket
to accept, an assigned match to finish, else a create, poll or cancel. The players follow the
real flow (create, poll until matched, accept, poll until assigned, server reports the match
finished), and a fifth of the tickets are cancelled while queued.

Held long-polls are separate threads, each re-polling its own ticket with ?wait= as soon as
the previous poll answers, on a mode whose matches need more players than there are polls,
so they are never matched and each poll waits its full time.

An answer counts as an error when it is a 5xx, a status the flow cannot produce, a timeout or
a connection failure. 409s on accept and cancel are races the flow can lose (the ready-check
deadline passed, the ticket was matched meanwhile) and are counted apart as conflicts.
"""
from __future__ import annotations

import http.client
import itertools
import json
import queue
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

MATCH_MODE = "duel"
HOLD_MODE = "hold"  # team_size x teams above any long-poll count: never matched
HEARTBEAT_EVERY_S = 5.0
LIVE_TICKETS_CAP = 150
CANCEL_SHARE = 0.2

# statuses each operation may answer in a healthy run
EXPECTED: dict[str, set[int]] = {
    "create": {201},
    "poll": {200},
    "accept": {200},
    "cancel": {200},
    "finish": {200},
    "heartbeat": {200},
    "longpoll": {200},
}
CONFLICT_OK = {"accept", "cancel"}  # 409 is a lost race there, not an error


@dataclass
class Live:
    ticket_id: str
    token: str
    status: str = "queued"
    cancel: bool = False  # this player will leave the queue on its own
    accepted: bool = False
    last_poll: float = 0.0


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)  # (op, status)
    errors: Counter = field(default_factory=Counter)  # (op, what)
    conflicts: Counter = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    late_slots: int = 0  # slots that waited for a free client thread
    longpoll_early: int = 0  # long-polls that answered well before their wait
    outcomes: Counter = field(default_factory=Counter)  # ticket end states seen by polls

    def record(self, op: str, status: int | None, seconds: float, detail: str = "") -> None:
        self.latencies[op].append(seconds)
        if status is None:
            self.errors[(op, detail or "no answer")] += 1
            self._sample(f"{op}: {detail}")
            return
        self.statuses[(op, status)] += 1
        if status in EXPECTED[op]:
            return
        if status == 409 and op in CONFLICT_OK:
            self.conflicts[op] += 1
            return
        self.errors[(op, str(status))] += 1
        self._sample(f"{op}: {status} {detail[:200]}")

    def _sample(self, line: str) -> None:
        if len(self.error_samples) < 20:
            self.error_samples.append(line)


class Client:
    """One keep-alive HTTP/1.1 connection; reconnects once if the server closed it."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self._host, self._port, self._timeout = host, port, timeout
        self._conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: Any = None,
             token: str | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            try:
                self._conn.request(method, path, body=data, headers=headers)
                answer = self._conn.getresponse()
                raw = answer.read()
                if answer.getheader("Connection", "").lower() == "close":
                    self.close()
                return answer.status, (json.loads(raw) if raw else None)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # a keep-alive connection the server closed while idle: retry on a new one
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Load:
    def __init__(self, host: str, port: int, *, rate: float, longpolls: int, server_token: str,
                 servers: int = 20, clients: int = 16, longpoll_wait_s: float = 10.0,
                 seed: int = 1) -> None:
        self._host, self._port = host, port
        self._rate = rate
        self._longpolls = longpolls
        self._server_token = server_token
        self._servers = [f"soak-gs-{n}" for n in range(servers)]
        self._clients = clients
        self._longpoll_wait_s = longpoll_wait_s
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._live: dict[str, Live] = {}
        self._to_finish: list[str] = []
        self._finished: set[str] = set()
        self._heartbeat_due = {server: 0.0 for server in self._servers}
        self._players = itertools.count()
        self.stats = Stats()
        self._stop = threading.Event()

    # --- running ---------------------------------------------------------------------------

    def run(self, duration_s: float) -> Stats:
        slots: queue.Queue[float | None] = queue.Queue()
        workers = [threading.Thread(target=self._work, args=(slots,), name=f"soak-client-{n}", daemon=True)
                   for n in range(self._clients)]
        holders = [threading.Thread(target=self._hold, args=(n,), name=f"soak-longpoll-{n}", daemon=True)
                   for n in range(self._longpolls)]
        for thread in workers + holders:
            thread.start()
        started = time.monotonic()
        interval = 1.0 / self._rate
        for index in itertools.count():
            due = started + index * interval
            if due >= started + duration_s:
                break
            delay = due - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            if slots.qsize() > self._clients:
                self.stats.late_slots += 1
            slots.put(due)
        for _ in workers:
            slots.put(None)
        for thread in workers:
            thread.join(30)
        self._stop.set()
        for thread in holders:
            thread.join(self._longpoll_wait_s + 15)
        return self.stats

    def _work(self, slots: queue.Queue) -> None:
        client = Client(self._host, self._port, timeout=15)
        while slots.get() is not None:
            op, run = self._next_action()
            started = time.monotonic()
            try:
                status, detail = run(client)
            except (OSError, http.client.HTTPException, ValueError) as error:
                client.close()
                self.stats.record(op, None, time.monotonic() - started, repr(error))
                continue
            self.stats.record(op, status, time.monotonic() - started, detail)
        client.close()

    def _hold(self, index: int) -> None:
        client = Client(self._host, self._port, timeout=self._longpoll_wait_s + 15)
        try:
            status, body = client.call("POST", "/v1/tickets", {
                "player_id": f"holder-{index}", "mode": HOLD_MODE, "mmr": 1500})
        except (OSError, http.client.HTTPException) as error:
            self.stats.record("longpoll", None, 0.0, f"create: {error!r}")
            return
        if status != 201:
            self.stats.record("longpoll", status, 0.0, f"create: {body}")
            return
        ticket, token, version = body["ticket_id"], body["token"], body["version"]
        path = f"/v1/tickets/{ticket}?wait={self._longpoll_wait_s:g}&version={version}"
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                status, body = client.call("GET", path, token=token)
            except (OSError, http.client.HTTPException) as error:
                client.close()
                self.stats.record("longpoll", None, time.monotonic() - started, repr(error))
                continue
            took = time.monotonic() - started
            self.stats.record("longpoll", status, took, str(body))
            if status == 200 and took < self._longpoll_wait_s * 0.8:
                self.stats.longpoll_early += 1
        try:
            client.call("DELETE", f"/v1/tickets/{ticket}", token=token)
        except (OSError, http.client.HTTPException):
            pass
        client.close()

    # --- choosing the next request ---------------------------------------------------------

    def _next_action(self):
        now = time.monotonic()
        with self._lock:
            for server, due in self._heartbeat_due.items():
                if due <= now:
                    self._heartbeat_due[server] = now + HEARTBEAT_EVERY_S
                    return "heartbeat", lambda c, s=server: self._heartbeat(c, s)
            for live in self._live.values():
                if live.status == "matched" and not live.accepted and not live.cancel:
                    live.accepted = True
                    return "accept", lambda c, t=live: self._accept(c, t)
            if self._to_finish:
                match_id = self._to_finish.pop()
                return "finish", lambda c, m=match_id: self._finish(c, m)
            for live in self._live.values():
                if live.cancel and live.status == "queued" and now - live.last_poll > 0.5:
                    live.cancel = False  # one attempt
                    live.last_poll = now
                    return "cancel", lambda c, t=live: self._cancel(c, t)
            # a matched player polls eagerly: its ready check has a deadline
            for live in self._live.values():
                if live.status == "matched" and now - live.last_poll > 0.5:
                    live.last_poll = now
                    return "poll", lambda c, t=live: self._poll(c, t)
            if len(self._live) < LIVE_TICKETS_CAP and self._random.random() < 0.35:
                return "create", self._create
            if self._live:
                live = min(self._live.values(), key=lambda t: t.last_poll)
                live.last_poll = now
                return "poll", lambda c, t=live: self._poll(c, t)
            return "create", self._create

    # --- the calls -------------------------------------------------------------------------

    def _create(self, client: Client) -> tuple[int, Any]:
        player = f"soak-{next(self._players)}"
        mmr = round(self._random.gauss(1500, 40), 1)
        status, body = client.call("POST", "/v1/tickets", {"player_id": player, "mode": MATCH_MODE, "mmr": mmr})
        if status == 201:
            with self._lock:
                self._live[body["ticket_id"]] = Live(
                    body["ticket_id"], body["token"], cancel=self._random.random() < CANCEL_SHARE,
                    last_poll=time.monotonic())
        return status, body

    def _poll(self, client: Client, live: Live) -> tuple[int, Any]:
        status, body = client.call("GET", f"/v1/tickets/{live.ticket_id}", token=live.token)
        if status == 200:
            self._observe(live, body)
        return status, body

    def _accept(self, client: Client, live: Live) -> tuple[int, Any]:
        status, body = client.call("POST", f"/v1/tickets/{live.ticket_id}/accept", token=live.token)
        if status == 200:
            self._observe(live, body)
        return status, body

    def _cancel(self, client: Client, live: Live) -> tuple[int, Any]:
        status, body = client.call("DELETE", f"/v1/tickets/{live.ticket_id}", token=live.token)
        if status == 200:
            self._observe(live, body)
        return status, body

    def _finish(self, client: Client, match_id: str) -> tuple[int, Any]:
        return client.call("POST", f"/v1/matches/{match_id}/finish", token=self._server_token)

    def _heartbeat(self, client: Client, server: str) -> tuple[int, Any]:
        index = self._servers.index(server)
        return client.call("PUT", f"/v1/servers/{server}", {"address": f"10.9.0.{index + 1}:7777"},
                           token=self._server_token)

    def _observe(self, live: Live, view: dict) -> None:
        with self._lock:
            status = view["status"]
            if status != live.status and status == "queued":
                live.accepted = False  # back in the queue after a failed session
            live.status = status
            if status == "assigned":
                match_id = view["assignment"]["match_id"]
                if match_id not in self._finished:
                    self._finished.add(match_id)
                    self._to_finish.append(match_id)
            if status in ("assigned", "finished", "cancelled", "expired"):
                self.stats.outcomes[status] += 1
                self._live.pop(live.ticket_id, None)
