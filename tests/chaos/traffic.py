"""Client traffic: players queueing, long-polling, answering ready checks (or not), and
dedicated servers registering, heartbeating and reporting matches over.

Bounded loops on loopback only; every thread has its own seeded random generator. A request
goes to a random ready replica, as behind a load balancer; no answer (refused, reset, timed
out) or a 503 is retried on another one.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from tests.chaos.api import Answer, call
from tests.chaos.ledger import TERMINAL, Ledger, TicketRecord
from tests.chaos.settings import SERVER_TOKEN, TEAM_SIZES

logger = logging.getLogger(__name__)

POLL_WAIT_S = 2
BACKFILL_SHARE = 0.5  # matches on registered servers that lose a player and ask for another
BACKFILL_TTL_S = 3
FOLLOW_LIMIT_S = 60.0
# behaviour -> weight. "vanish": stops polling once in a ready check; "abandon": never polls.
BEHAVIOURS = {"accept": 72, "decline": 7, "cancel": 7, "abandon": 7, "vanish": 7}


class Router:
    """Picks a ready replica for each request."""

    def __init__(self, urls: Callable[[], list[str]], stop: threading.Event) -> None:
        self._urls = urls
        self._stop = stop

    def send(self, rng: random.Random, method: str, path: str, body=None, token: str | None = None,
             timeout: float = 5.0, attempts: int = 20) -> Answer:
        """Retries until an answer other than "none" or 503, at most `attempts` times."""
        answer = Answer(0, None, "no ready replica")
        for _ in range(attempts):
            urls = self._urls()
            if urls:
                answer = call(rng.choice(urls), method, path, body, token, timeout)
                if answer.status not in (0, 503):
                    return answer
            if self._stop.wait(0.2 + rng.random() * 0.3):
                break
        return answer


@dataclass
class SimServer:
    server_id: str
    address: str
    silent_at: float | None = None  # wall clock when it stopped heartbeating
    match_id: str | None = None
    match_seen: float = 0.0
    hold_s: float = 0.0
    match_version: int = 0
    leave_at: float | None = None  # when a player of the match leaves and a backfill is asked


class ServerFleet:
    """Registered dedicated servers plus the operator of the static ones."""

    def __init__(self, router: Router, rng: random.Random, stop: threading.Event, *, count: int,
                 static: tuple[str, ...], heartbeat_s: float = 0.4) -> None:
        self._router = router
        self._rng = rng
        self._stop = stop
        self._heartbeat_s = heartbeat_s
        self._lock = threading.Lock()
        self._next = 0
        self.servers: list[SimServer] = []
        self._static = set(static)
        self._static_matches: dict[str, float] = {}  # match id -> when to finish it
        self._static_done: set[str] = set()
        self.counts: Counter = Counter()
        # Rosters that broke a rule while their server held them (a team over its size, a player
        # twice): each is a violation of the run.
        self.anomalies: list[tuple[str, str]] = []
        self.team_sizes = TEAM_SIZES
        for _ in range(count):
            self._add()
        self._thread = threading.Thread(target=self._run, name="chaos-servers", daemon=True)

    def _add(self) -> SimServer:
        self._next += 1
        server = SimServer(f"chaos-sv-{self._next}", f"127.0.0.1:{9000 + self._next}")
        self.servers.append(server)
        return server

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def silence_one(self) -> str | None:
        """A server stops heartbeating for good (a busy one when there is one); a new one joins."""
        with self._lock:
            speaking = [s for s in self.servers if s.silent_at is None]
            if not speaking:
                return None
            busy = [s for s in speaking if s.match_id]
            victim = self._rng.choice(busy or speaking)
            victim.silent_at = time.time()
            self._add()
            self.counts["silenced_busy" if victim.match_id else "silenced_free"] += 1
            return victim.server_id

    def report_static_match(self, match_id: str, server: str) -> None:
        """A client saw an assignment: if it is on a static server, its operator ends it later."""
        if server not in self._static:
            return
        with self._lock:
            if match_id not in self._static_matches and match_id not in self._static_done:
                self._static_matches[match_id] = time.monotonic() + self._rng.uniform(1.0, 4.0)

    def silenced(self) -> list[SimServer]:
        with self._lock:
            return [s for s in self.servers if s.silent_at is not None]

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                speaking = [s for s in self.servers if s.silent_at is None]
                due = [m for m, at in self._static_matches.items() if at <= time.monotonic()]
            for server in speaking:
                self._beat(server)
            for match_id in due:
                answer = self._router.send(self._rng, "POST", f"/v1/matches/{match_id}/finish", None,
                                           SERVER_TOKEN, attempts=1)
                if answer.status in (200, 404):
                    self.counts[f"static_finish_{answer.status}"] += 1
                    with self._lock:
                        self._static_matches.pop(match_id, None)
                        self._static_done.add(match_id)
            self._stop.wait(self._heartbeat_s)

    def _beat(self, server: SimServer) -> None:
        answer = self._router.send(self._rng, "PUT", f"/v1/servers/{server.server_id}",
                                   {"address": server.address}, SERVER_TOKEN, attempts=1)
        if answer.status != 200:
            self.counts[f"heartbeat_{answer.status}"] += 1
            return
        self.counts["heartbeat_200"] += 1
        match_id = answer.body.get("match_id") if answer.body.get("state") == "busy" else None
        if match_id is None:
            server.match_id = None
            return
        if match_id != server.match_id:
            server.match_id, server.match_seen = match_id, time.monotonic()
            server.hold_s = self._rng.uniform(1.0, 4.0)
            server.match_version = 0
            # Half the matches lose a player early on, and their server asks for a replacement.
            server.leave_at = (time.monotonic() + self._rng.uniform(0.2, 1.0)
                               if self._rng.random() < BACKFILL_SHARE else None)
            if server.leave_at is not None:
                server.hold_s += 3.0  # time for the backfill to be served
            self.counts["matches_hosted"] += 1
            return
        version = answer.body.get("match_version")
        if version is not None and version != server.match_version:
            server.match_version = version
            self._check_roster(match_id)
        if server.leave_at is not None and time.monotonic() >= server.leave_at:
            server.leave_at = None
            self._leave_and_backfill(match_id)
        if time.monotonic() - server.match_seen >= server.hold_s:
            finish = self._router.send(self._rng, "POST", f"/v1/matches/{match_id}/finish", None,
                                       SERVER_TOKEN, attempts=1)
            self.counts[f"finish_{finish.status}"] += 1
            if finish.status in (200, 404):
                server.match_id = None


    def _roster(self, match_id: str) -> dict | None:
        answer = self._router.send(self._rng, "GET", f"/v1/matches/{match_id}", None, SERVER_TOKEN, attempts=1)
        self.counts[f"roster_{answer.status}"] += 1
        return answer.body if answer.status == 200 else None

    def _check_roster(self, match_id: str) -> None:
        """What a game server would trust: every team within its size, every player once."""
        roster = self._roster(match_id)
        if roster is None or roster.get("state") != "assigned":
            return
        size = self.team_sizes.get(roster.get("mode"))
        seen: set[str] = set()
        for index, team in enumerate(roster["teams"]):
            players = [p["player_id"] for p in team["players"]]
            if size is not None and len(players) > size:
                self.anomalies.append((match_id, f"team {index} holds {players}, over its size {size}"))
            for player in players:
                if player in seen:
                    self.anomalies.append((match_id, f"player {player} twice on the roster"))
                seen.add(player)

    def _leave_and_backfill(self, match_id: str) -> None:
        """A player drops out; the server reports it and asks the matcher for a replacement."""
        roster = self._roster(match_id)
        if roster is None or roster.get("state") != "assigned":
            return
        placed = [(index, p["player_id"]) for index, team in enumerate(roster["teams"]) for p in team["players"]]
        if not placed:
            return
        team, player = self._rng.choice(placed)
        left = self._router.send(self._rng, "DELETE", f"/v1/matches/{match_id}/players/{player}", None,
                                 SERVER_TOKEN, attempts=1)
        self.counts[f"leave_{left.status}"] += 1
        if left.status != 200:
            return
        asked = self._router.send(self._rng, "POST", f"/v1/matches/{match_id}/backfill",
                                  {"slots": [{"team": team, "count": 1}], "ttl_s": BACKFILL_TTL_S},
                                  SERVER_TOKEN, attempts=1)
        self.counts[f"backfill_{asked.status}"] += 1


class Players:
    """`threads` client threads, each playing one ticket after another until stopped."""

    def __init__(self, router: Router, ledger: Ledger, fleet: ServerFleet, stop: threading.Event, *,
                 seed: int, threads: int) -> None:
        self._router = router
        self._ledger = ledger
        self._fleet = fleet
        self._stop = stop
        self._seed = seed
        self._lock = threading.Lock()
        self._vanish_pending = 0
        self.counts: Counter = Counter()
        self._threads = [threading.Thread(target=self._run, args=(i,), name=f"chaos-player-{i}", daemon=True)
                         for i in range(threads)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))

    def request_vanish(self) -> None:
        """The next client to enter a ready check disappears without answering it."""
        with self._lock:
            self._vanish_pending += 1

    def _take_vanish(self) -> bool:
        with self._lock:
            if self._vanish_pending:
                self._vanish_pending -= 1
                return True
            return False

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def _run(self, index: int) -> None:
        rng = random.Random(f"{self._seed}-player-{index}")
        episode = 0
        while not self._stop.is_set():
            episode += 1
            self._episode(rng, f"s{self._seed}-c{index}-{episode}")

    def _episode(self, rng: random.Random, name: str) -> None:
        squad = rng.random() < 0.35
        mode = "squad" if squad else "duel"
        party = [f"{name}-b"] if squad and rng.random() < 0.6 else []
        players = (f"{name}-a", *party)
        behaviour = rng.choices(list(BEHAVIOURS), weights=list(BEHAVIOURS.values()))[0]
        mmr = max(0, int(rng.gauss(1500, 150)))
        if behaviour == "abandon" and rng.random() < 0.6:
            # Far from everyone (beyond mmr_window_max): nothing matches it, so only the
            # ticket TTL can take it out of its queue.
            mmr = rng.randint(10_000, 100_000)
        body = {"player_id": players[0], "mode": mode, "mmr": mmr, "party": party}
        record = self._create(rng, body, players, behaviour)
        if record is not None:
            self._count(f"behaviour_{behaviour}")
            if behaviour != "abandon":
                self._follow(rng, record)

    def _create(self, rng: random.Random, body: dict, players: tuple[str, ...],
                behaviour: str) -> TicketRecord | None:
        # A retry after no answer may meet the ticket the first attempt created: 409 names it.
        for _ in range(10):
            answer = self._router.send(rng, "POST", "/v1/tickets", body, attempts=5)
            if answer.status == 201:
                self._count("created")
                return self._ledger.acknowledge(answer.body, players, behaviour)
            if answer.status == 409 and isinstance(answer.body, dict) and answer.body.get("ticket_id"):
                self._count("create_409_orphan")
                self._ledger.orphan(answer.body["ticket_id"])
                return None
            if self._stop.is_set():
                return None
            self._count(f"create_{answer.status}")
            if answer.status not in (0, 503):
                logger.warning("create answered %s: %s", answer.status, answer.body)
                return None
        return None

    def _follow(self, rng: random.Random, record: TicketRecord) -> None:
        token, path = record.token, f"/v1/tickets/{record.ticket_id}"
        give_up = time.monotonic() + FOLLOW_LIMIT_S
        cancel_at = time.monotonic() + rng.uniform(0.3, 5.0) if record.behaviour == "cancel" else None
        while not self._stop.is_set() and time.monotonic() < give_up:
            if cancel_at is not None and time.monotonic() >= cancel_at:
                cancel_at = None
                answer = self._router.send(rng, "DELETE", path, token=token)
                self._count(f"cancel_{answer.status}")
                if answer.status == 200:
                    record.observe(answer.body)
                continue
            answer = self._router.send(rng, "GET", f"{path}?wait={POLL_WAIT_S}&version={record.max_version}",
                                       token=token, timeout=POLL_WAIT_S + 8)
            if answer.status != 200:
                self._count(f"poll_{answer.status}")
                if answer.status == 404:
                    record.anomalies.append("404 while following its own ticket")
                    return
                continue
            view = answer.body
            record.observe(view)
            status = view["status"]
            if status in TERMINAL:
                self._count(f"ended_{status}")
                return
            if status == "assigned" and view.get("assignment"):
                self._fleet.report_static_match(view["assignment"]["match_id"], view["assignment"]["server"])
            session = view.get("session") or {}
            if status == "matched" and session.get("state") == "accepting" and not session.get("accepted"):
                if record.behaviour == "vanish" or self._take_vanish():
                    self._count("vanished_in_ready_check")
                    return
                self._ready_check(rng, record, decline=record.behaviour == "decline")

    def _ready_check(self, rng: random.Random, record: TicketRecord, *, decline: bool) -> None:
        if self._stop.wait(rng.uniform(0.0, 0.8)):  # players take a moment to click
            return
        verb = "decline" if decline else "accept"
        answer = self._router.send(rng, "POST", f"/v1/tickets/{record.ticket_id}/{verb}", None,
                                   token=record.token)
        self._count(f"{verb}_{answer.status}")
        if answer.status == 200:
            record.observe(answer.body)
