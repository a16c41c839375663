"""The matchmaker tick: due deadlines, then per queue backfills and matching, then allocation.

Every unit of work is one atomic store script, so the tick can stop between any two of them
(shutdown, an exception, SIGKILL) without leaving anything half-done, and any number of
replicas may tick at once: claims re-check that every ticket is still queued. A short
per-mode lock keeps two replicas from computing the same mode at the same moment; it only
saves work (and conflicts), correctness never depends on it.
"""
from __future__ import annotations

import gc
import logging
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Callable, Iterator, Mapping, Sequence

from mmserver.config import ModeConfig
from mmserver.matchmaking import FailureMemo, MatchRules, Proposal, QueuedTicket, functions, match_queue
from mmserver.matchmaking.backfill import OpenBackfill, plan_backfills
from mmserver.shutdown import Shutdown
from mmserver.store import Store
from mmserver.store.profiles import encode_choices, encode_roles
from mmserver.store.store import ClaimBatches

logger = logging.getLogger(__name__)

# Deadline scripts per tick, counted as scripts of batch_size sessions (a tick runs more, smaller
# ones when a mode's matches are big: Ticker); the rest waits for the next tick.
MAX_DEADLINE_BATCHES = 20
CLAIMS_IN_FLIGHT = 2  # claim scripts sent before the oldest one's answer is read
# Redis runs a script to its end while every other client of it waits, whichever replica it
# serves, so a tick's scripts are cut by the tickets they change, not only by proposals or
# sessions: a batch of 500 5v5 proposals (5,000 tickets) held Redis 55-90 ms, an allocation
# of 500 5v5 sessions up to 250 ms. These bounds keep each wait under ~30 ms, for the same
# work in more calls (docs/PERFORMANCE.md, "How long a tick holds Redis"):
CLAIM_TICKETS = 1000  # per claim script (a proposal of more tickets goes alone)
# A failing match function fails again every tick (5 a second at 200 ms): its traceback is
# logged (and sent to Sentry) at most this often per mode, with the count of those held back.
FUNCTION_ERROR_LOG_S = 60.0
SESSION_TICKETS = 250  # per deadline or allocation script, by the largest match of any mode


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Reading and matching a big queue allocates hundreds of thousands of objects that live
    until the tick ends, none of them in reference cycles: each allocation burst would trigger
    the cyclic collector, which walks every live object (~40% of the time to build 100,000
    queued tickets). Reference counting still frees everything. Re-enabled only if it was on
    (another tick, in a test or a second ticker, may overlap)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class TickResult:
    """What one tick did: counts of its work (the metrics record them), whether it stopped
    before the end because shutdown was requested, and how long it took."""
    reads_refreshed: int = 0  # tickets read since the last tick whose deadlines were pushed back
    deadlines_processed: int = 0  # ready-check and allocation deadlines handled
    backfilled: int = 0  # queued tickets placed into running matches' backfills
    proposals: int = 0  # matches the rules (or match functions) proposed
    answers_reused: int = 0  # waiting tickets whose blocked_by was reused, not worked out again
    matches_claimed: int = 0  # proposals whose claim script succeeded
    claim_conflicts: int = 0  # proposals refused because a ticket changed first
    match_function_errors: int = 0  # modes skipped because their match function failed
    allocated: int = 0  # matches given a game server
    stopped_early: bool = False
    duration_s: float = 0.0


class Ticker:
    def __init__(self, store: Store, modes: Mapping[str, ModeConfig], *, shutdown: Shutdown,
                 batch_size: int = 500, mode_lock_s: float = 5.0, regions: Sequence[str] = ()) -> None:
        """mode_lock_s: how long one replica may hold a mode before others compute it too
        (0 disables the lock). regions: [regions] names, where latency picks a match's region."""
        self._store = store
        self._modes = dict(modes)
        self._rules = {name: MatchRules.from_mode(mode, regions) for name, mode in self._modes.items()}
        # Imported at start (the configuration already refused one that does not import).
        self._functions = {name: functions.load(mode.match_function)
                           for name, mode in self._modes.items() if mode.match_function}
        self._shutdown = shutdown
        self._batch_size = max(1, batch_size)
        # Scripts that take whole sessions (deadlines, allocation: ~4x a claim's work per
        # ticket) take as many as hold SESSION_TICKETS tickets of the largest match a mode
        # forms (at least one, at most batch_size); a tick runs more of them instead, up to as
        # many sessions as before.
        largest = max((mode.players_per_match for mode in self._modes.values()), default=1)
        self._session_batch = max(1, min(self._batch_size, SESSION_TICKETS // largest))
        self._deadline_batches = MAX_DEADLINE_BATCHES * -(-self._batch_size // self._session_batch)
        self._mode_lock_s = mode_lock_s
        # Per queue (mode, region) of a mode with rules: why its tickets failed as anchors,
        # reused while nothing near them changed (matchmaking/memo.py).
        self._memos: dict[tuple[str, str | None], FailureMemo] = {}
        # Per mode with a failing match function: (when its next traceback may be logged,
        # failures held back since the last one).
        self._function_errors: dict[str, tuple[float, int]] = {}

    def tick(self) -> TickResult:
        started = time.monotonic()
        counts = TickResult()
        # First: a ticket read (from the view cache) since the last tick must not expire in
        # this tick's deadlines.
        counts.reads_refreshed = self._store.refresh_reads()
        if not self._deadlines(counts):
            return self._result(counts, started, stopped=True)
        for name in self._modes:
            if self._shutdown.is_set():
                return self._result(counts, started, stopped=True)
            self._match_mode(name, counts)
        if not self._allocate(counts):
            return self._result(counts, started, stopped=True)
        return self._result(counts, started, stopped=self._shutdown.is_set())

    @staticmethod
    def _result(counts: TickResult, started: float, *, stopped: bool) -> TickResult:
        counts.stopped_early = stopped
        counts.duration_s = time.monotonic() - started
        return counts

    def _deadlines(self, counts: TickResult) -> bool:
        for _ in range(self._deadline_batches):
            if self._shutdown.is_set():
                return False
            done = self._store.process_deadlines(self._session_batch)
            counts.deadlines_processed += done.total
            if not done.more:
                break
        return True

    def _match_mode(self, name: str, counts: TickResult) -> None:
        lock = None
        if self._mode_lock_s > 0:
            lock = self._store.try_lock(f"mode:{name}", self._mode_lock_s)
            if lock is None:
                logger.debug("mode %s is being matched by another replica", name)
                return
        try:
            # Open backfills are served first, from every queue of the mode, before new
            # matches form (docs/BACKFILL.md). The oldest batch_size per tick: bounded work.
            backfills = [] if name in self._functions else self._store.open_backfills(name, self._batch_size)
            for region in self._store.regions(name):
                if self._shutdown.is_set():
                    return
                self._match_queue(name, region, counts, backfills)
        finally:
            if lock is not None:
                self._store.unlock(f"mode:{name}", lock)

    def _propose(self, name: str, region: str | None, tickets: list[QueuedTicket], counts: TickResult,
                 on_proposal: Callable[[Proposal], None] | None = None) -> tuple[list[Proposal], dict[str, str]] | None:
        """Proposals and explanations for one queue; None when the mode's match function failed
        (reported, and the mode skips this tick). `on_proposal` sees proposals as the matcher
        forms them (a match function's come all at once)."""
        now = self._store.now()  # Redis's clock: the one that stamped every enqueue time
        function = self._functions.get(name)
        if function is None:
            rules = self._rules[name]
            if rules.plain:
                matching = match_queue(tickets, rules, now, on_proposal=on_proposal)
            else:
                memo = self._memos.setdefault((name, region), FailureMemo())
                reused = memo.recalled
                matching = match_queue(tickets, rules, now, on_proposal=on_proposal, memo=memo)
                counts.answers_reused += memo.recalled - reused
            return matching.proposals, matching.blocked
        try:
            proposals = functions.run(function, tickets, self._modes[name], now)
        except functions.MatchFunctionError:
            self._report_function_error(name)
            return None
        matched = {ticket_id for p in proposals for team in p.teams for ticket_id in team}
        return proposals, {t.ticket_id: "match_function" for t in tickets if t.ticket_id not in matched}

    def _report_function_error(self, name: str) -> None:
        """Logged at ERROR with the traceback (Sentry's logging integration reports it), at most
        once per FUNCTION_ERROR_LOG_S per mode; call it inside the except block."""
        now = time.monotonic()
        quiet_until, held = self._function_errors.get(name, (0.0, 0))
        if now < quiet_until:
            self._function_errors[name] = (quiet_until, held + 1)
            return
        self._function_errors[name] = (now + FUNCTION_ERROR_LOG_S, 0)
        since = f" ({held} more failures since the last report)" if held else ""
        logger.exception("match function of mode %s failed; the mode skips this tick%s", name, since)

    def _backfill(self, name: str, region: str | None, tickets: list[QueuedTicket],
                  backfills: list[OpenBackfill], counts: TickResult) -> list[QueuedTicket]:
        """Fills open backfills from this queue; returns the tickets left for new matches.
        A planned fill that the script refuses (the slot or ticket taken meanwhile) leaves its
        ticket to normal matching, whose claim re-checks it in turn."""
        fills = plan_backfills(backfills, tickets, self._rules[name], self._store.now(), region)
        if not fills:
            return tickets
        results = self._store.fill_backfills(name, region, self._modes[name].team_size, fills)
        filled = {fill.ticket_id for fill, why in zip(fills, results) if why == ""}
        counts.backfilled += len(filled)
        return [t for t in tickets if t.ticket_id not in filled] if filled else tickets

    def _match_queue(self, name: str, region: str | None, counts: TickResult,
                     backfills: list[OpenBackfill] = ()) -> None:
        claims = _Claims(self, name, region, counts)
        try:
            with _cyclic_gc_paused():
                tickets = self._store.read_queue(name, region)
                if backfills and tickets:
                    tickets = self._backfill(name, region, tickets, backfills, counts)
                claims.tickets = tickets
                if tickets:
                    result = self._propose(name, region, tickets, counts, claims.add)
                else:
                    result = ([], {})
                    self._memos.pop((name, region), None)  # an empty queue has nothing to remember
            if result is None:
                counts.match_function_errors += 1
                # What keeps them waiting is the function: their views say so, not null.
                self._store.record_blocked(name, region, {t.ticket_id: "match_function" for t in tickets})
                return
            proposals, blocked = result
            self._store.record_blocked(name, region, blocked)
            counts.proposals += len(proposals)
            claims.finish(proposals)
        finally:
            claims.close()

    def _allocate(self, counts: TickResult) -> bool:
        """Pages of waiting sessions, until every region's line has run out of sessions or of
        servers (sessions wait in one line per region: one without a free server holds back
        only its own)."""
        while True:
            if self._shutdown.is_set():
                return False
            page = self._store.allocate_page(self._session_batch)
            counts.allocated += page.allocated
            if not page.more:
                return True


class _Claims:
    """One queue's claims, a batch of `batch_size` proposals (and at most CLAIM_TICKETS
    tickets: _Batches) per script. Batches are sent as soon as they are whole, while the
    matcher goes on forming the next proposals: Redis runs the claim scripts on another core
    meanwhile, at most CLAIMS_IN_FLIGHT at once, each on a connection of its own
    (Store.claims), and the oldest one's results are read back before another is sent.
    Batches are disjoint and each is one atomic script, so their order in Redis does not
    matter. All in the ticker's thread: claim threads, which took the GIL from the matcher
    for every step of a call and waited their turn for it, made the tick ~0.15 s longer on
    the 5v5 rules queue of bench_rules.py (docs/PERFORMANCE.md)."""

    def __init__(self, ticker: Ticker, name: str, region: str | None, counts: TickResult) -> None:
        self._ticker = ticker
        self._name = name
        self._region = region
        self._counts = counts
        self._size = ticker._batch_size
        self._has_profiles = ticker._modes[name].has_profiles
        self.tickets: list[QueuedTicket] = []
        self._players: dict[str, tuple[str, ...]] | None = None
        self._batches = _Batches(self._size)
        self._sent = 0  # proposals handed to claim scripts, in the matcher's order
        self._stopped = False
        self._stream: ClaimBatches | None = None
        self._in_flight: deque[int] = deque()  # proposals of each batch in flight, oldest first

    def add(self, proposal: Proposal) -> None:
        """The matcher's on_proposal: a whole batch is sent at once."""
        for batch in self._batches.add(proposal):
            self._send(batch)

    def finish(self, proposals: list[Proposal]) -> None:
        """Claims the proposals not sent yet (the matcher's full list, in its order) and reads
        back every batch; raises the first failure."""
        cutter = _Batches(self._size)
        batches = [batch for proposal in proposals[self._sent:] for batch in cutter.add(proposal)]
        if cutter.pending:
            batches.append(cutter.take())
        self._batches = _Batches(self._size)
        for batch in batches:
            self._send(batch)
        while self._in_flight:
            self._receive()

    def close(self) -> None:
        """Whatever happens, the batches already sent are read back and counted, until a read
        fails (only when a failure interrupted the queue: finish() reads them all); the
        connections of any left unread are closed."""
        if self._stream is None:
            return
        try:
            while self._in_flight:
                self._receive()
        except Exception:  # the failure that interrupted the queue is already on its way up
            logger.debug("claims of mode %s left unread", self._name, exc_info=True)
        finally:
            self._stream.close()

    def _send(self, batch: list[Proposal]) -> None:
        if self._stopped or self._ticker._shutdown.is_set():
            self._stopped = True
            return
        if self._stream is None:
            self._stream = self._ticker._store.claims(self._name, self._region,
                                                      self._ticker._modes[self._name].accept_timeout_s,
                                                      CLAIMS_IN_FLIGHT)
        if len(self._in_flight) >= CLAIMS_IN_FLIGHT:
            self._receive()
            if self._ticker._shutdown.is_set():
                self._stopped = True
                return
        self._prepare(batch)
        choices = _choices(batch, self._players or {}) if self._has_profiles else None
        self._stream.send([p.teams for p in batch], choices)
        self._sent += len(batch)
        self._in_flight.append(len(batch))

    def _prepare(self, batch: list[Proposal]) -> None:
        """Ticket id -> player ids, once per queue, when a proposal gives roles (its roles
        are per ticket, the claim stores them per player)."""
        if self._has_profiles and self._players is None and any(p.roles for p in batch):
            self._players = {t.ticket_id: t.players for t in self.tickets}

    def _receive(self) -> None:
        sent = self._in_flight.popleft()
        claimed = sum(1 for r in self._stream.receive() if r.session_id)
        self._counts.matches_claimed += claimed
        self._counts.claim_conflicts += sent - claimed


class _Batches:
    """Proposals cut into claim batches, in order: at most `size` proposals and CLAIM_TICKETS
    tickets each (a proposal of more tickets than that is a batch of its own)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self.pending: list[Proposal] = []
        self._tickets = 0

    def add(self, proposal: Proposal) -> list[list[Proposal]]:
        """The batches this proposal completes: none, one, or two (the one before it, which it
        would overflow, and itself when it alone reaches a bound)."""
        done = []
        tickets = sum(map(len, proposal.teams))
        if self.pending and self._tickets + tickets > CLAIM_TICKETS:
            done.append(self.take())
        self.pending.append(proposal)
        self._tickets += tickets
        if len(self.pending) >= self._size or self._tickets >= CLAIM_TICKETS:
            done.append(self.take())
        return done

    def take(self) -> list[Proposal]:
        batch, self.pending, self._tickets = self.pending, [], 0
        return batch


def _choices(proposals: list[Proposal], players: Mapping[str, tuple[str, ...]]) -> list[str]:
    """What the rules chose for each proposal, as the claim stores it: region, each player's
    role (the matcher gives them per ticket, in the ticket's player order), chosen values.
    Players and roles are laid out flat, then paired, by C loops (a tick encodes one per
    match; pairing ticket by ticket in Python took twice as long)."""
    get = players.get
    out = []
    for p in proposals:
        by_ticket = p.roles
        if not by_ticket:
            out.append(encode_choices(p.region, _NO_ROLES, p.attributes))
            continue
        players_of = list(map(get, by_ticket, repeat(())))
        roles_of = list(by_ticket.values())
        if list(map(len, players_of)) == list(map(len, roles_of)):
            ids = list(chain.from_iterable(players_of))
            roles = list(chain.from_iterable(roles_of))
        else:  # a ticket missing from the read, or roles not one per player: pairs zip allows
            ids, roles = [], []
            for of_ticket, per_player in zip(players_of, roles_of):
                for player, role in zip(of_ticket, per_player):
                    ids.append(player)
                    roles.append(role)
        out.append(encode_roles(p.region, ids, roles, p.attributes))
    return out


_NO_ROLES: Mapping[str, str] = {}
