"""What the clients were told: every 201 (the acknowledged tickets) and what they saw after.

Each record is written by the one client thread that owns the ticket; the checker reads them
once traffic has stopped.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

LIVE = frozenset({"queued", "matched", "assigned"})
TERMINAL = frozenset({"finished", "cancelled", "expired"})


@dataclass
class TicketRecord:
    ticket_id: str
    token: str
    players: tuple[str, ...]
    mode: str
    behaviour: str
    acked_at: float  # wall clock
    max_version: int = 0
    statuses: list[str] = field(default_factory=list)  # observed, consecutive repeats folded
    match_ids: set[str] = field(default_factory=set)
    terminal: tuple[str, str] | None = None  # first terminal (status, reason) observed
    anomalies: list[str] = field(default_factory=list)
    # session id -> (first, last) monotonic time its client saw the ticket matched in it
    sessions_seen: dict[str, list[float]] = field(default_factory=dict)

    @property
    def longest_matched_s(self) -> float:
        return max((last - first for first, last in self.sessions_seen.values()), default=0.0)

    def observe(self, view: dict) -> None:
        """Everything a client can check on its own, from one answer about its ticket."""
        status, version = view.get("status"), int(view.get("version", 0))
        if version < self.max_version:
            self.anomalies.append(f"version went back from {self.max_version} to {version} ({status})")
        self.max_version = max(self.max_version, version)
        if not self.statuses or self.statuses[-1] != status:
            self.statuses.append(status)
        if self.terminal is not None and status != self.terminal[0]:
            self.anomalies.append(f"left terminal state {self.terminal[0]} for {status}")
        if status in TERMINAL:
            if not view.get("reason"):
                self.anomalies.append(f"{status} without a reason")
            if self.terminal is None:
                self.terminal = (status, view.get("reason", ""))
        session = view.get("session")
        if status == "matched" and session:
            seen = self.sessions_seen.setdefault(session.get("session_id", ""), [time.monotonic()] * 2)
            seen[1] = time.monotonic()
        assignment = view.get("assignment")
        if status in ("assigned", "finished") and assignment:
            self.match_ids.add(assignment.get("match_id", ""))


class Ledger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: dict[str, TicketRecord] = {}
        # Tickets created by a request whose answer never arrived, found again through the 409
        # of the retry: nobody holds their token, so they must expire on their own.
        self.orphans: set[str] = set()

    def acknowledge(self, view: dict, players: tuple[str, ...], behaviour: str) -> TicketRecord:
        record = TicketRecord(view["ticket_id"], view["token"], players, view["mode"], behaviour, time.time())
        record.observe(view)
        with self._lock:
            if record.ticket_id in self.records:
                record.anomalies.append("ticket id acknowledged twice")
            self.records[record.ticket_id] = record
        return record

    def orphan(self, ticket_id: str) -> None:
        with self._lock:
            self.orphans.add(ticket_id)

    def __len__(self) -> int:
        return len(self.records)
