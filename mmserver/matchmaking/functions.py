"""Match functions: a mode's own Python function proposes its matches (SPEC "Match rules").

A mode with `match_function = "module:function"` hands its queued tickets to that function,
called as `function(tickets, mode, now)`. The function owns the matching rules of its mode;
this module checks only the shape of what it returns (team count and sizes within the mode's
bounds, no ticket twice, every id queued) and turns it into Proposal values.

Pure: no Redis, no HTTP. The caller reports a MatchFunctionError (log, Sentry, metric) and
skips the mode for that tick.
"""
from __future__ import annotations

import importlib
import signal
import threading
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Sequence

from mmserver.matchmaking.model import AttributeValue, Proposal, QueuedTicket

if TYPE_CHECKING:  # config imports this module: no import cycle at run time
    from mmserver.config import ModeConfig


class MatchFunctionError(Exception):
    """A match function that cannot be loaded, raised, or returned something other than
    proposals of the mode's shape. The message is one line saying which and why."""


class TicketView(NamedTuple):
    """One queued ticket as a match function sees it (read-only).

    `attributes` and `latencies` are read-only mappings; `roles` holds one tuple of offered
    roles per player (owner first); `waited_s` is `now` minus the ticket's enqueue time.
    `region` is the fixed region the ticket asked for, or None.
    """

    ticket_id: str
    mmr: float
    size: int
    players: tuple[str, ...]
    attributes: Mapping[str, AttributeValue]
    latencies: Mapping[str, float]
    roles: tuple[tuple[str, ...], ...]
    waited_s: float
    region: str | None


def load(spec: str) -> Callable[..., Any]:
    """Import "module:function" (the function part may be dotted, "module:Class.method").

    Raises MatchFunctionError with a one-line reason, the import error included."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name.strip() or not attribute.strip():
        raise MatchFunctionError(f"{spec!r} is not of the form \"module:function\"")
    sigint = _SigintWatch()
    try:
        with sigint:
            target: Any = importlib.import_module(module_name)
    except BaseException as error:
        # A module that calls sys.exit() or raises KeyboardInterrupt at import has failed to
        # load like any other; only an interrupt from a real SIGINT (Ctrl-C) is the operator's.
        if isinstance(error, KeyboardInterrupt) and sigint.arrived:
            raise
        raise MatchFunctionError(f"cannot import module {module_name!r}: {_one_line(error)}") from error
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise MatchFunctionError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not callable(target):
        raise MatchFunctionError(f"{spec} is not callable (a {type(target).__name__})")
    return target


class _SigintWatch:
    """Notes whether a real SIGINT arrived while the block ran, passing it on to the handler in
    place. Only the main thread runs signal handlers; in another thread a KeyboardInterrupt can
    only come from the code itself, and nothing needs noting."""

    def __init__(self) -> None:
        self.arrived = False
        self._previous: Any = None

    def __enter__(self) -> "_SigintWatch":
        previous = signal.getsignal(signal.SIGINT)
        if threading.current_thread() is threading.main_thread() and callable(previous):
            def note(signum: int, frame: Any) -> None:
                self.arrived = True
                previous(signum, frame)

            self._previous = previous
            signal.signal(signal.SIGINT, note)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def views(tickets: Sequence[QueuedTicket], now: float) -> tuple[TicketView, ...]:
    """The read-only views a match function receives, in the order of `tickets`."""
    proxy = MappingProxyType
    return tuple(
        TicketView(
            t.ticket_id, t.mmr, t.size, t.players,
            t.attributes if type(t.attributes) is proxy else proxy(t.attributes),
            t.latencies if type(t.latencies) is proxy else proxy(t.latencies),
            t.roles, now - t.enqueued_at, t.region,
        )
        for t in tickets
    )


def run(function: Callable[..., Any], tickets: Sequence[QueuedTicket], mode: "ModeConfig",
        now: float) -> list[Proposal]:
    """Call `function(ticket_views, mode, now)` and check its answer.

    Returns one Proposal per proposal returned, in the function's order. Raises
    MatchFunctionError when the function raises (the original exception is the __cause__)
    or returns anything but a list of proposals of the mode's shape."""
    name = describe(function)
    try:
        result = function(views(tickets, now), mode, now)
    except Exception as error:
        raise MatchFunctionError(f"{name} raised {_one_line(error)}") from error
    return check(result, {t.ticket_id: t for t in tickets}, mode, name)


def check(result: Any, queued: Mapping[str, QueuedTicket], mode: "ModeConfig",
          name: str = "the match function") -> list[Proposal]:
    """Turn a match function's answer into Proposals, or raise MatchFunctionError."""
    if not isinstance(result, (list, tuple)):
        raise MatchFunctionError(f"{name} returned {_kind(result)}, not a list of proposals")
    smallest = mode.min_team_size or mode.team_size
    largest = mode.team_size
    bounds = f"{smallest}" if smallest == largest else f"{smallest} to {largest}"
    taken: dict[str, int] = {}
    proposals = []
    for p, proposal in enumerate(result):
        where = f"{name}: proposal {p}"
        if not isinstance(proposal, (list, tuple)):
            raise MatchFunctionError(f"{where} is {_kind(proposal)}, not a list of teams")
        if len(proposal) != mode.teams:
            raise MatchFunctionError(f"{where} has {len(proposal)} teams, the mode plays {mode.teams}")
        teams = []
        low = high = None
        for t, team in enumerate(proposal):
            if not isinstance(team, (list, tuple)):
                raise MatchFunctionError(f"{where}, team {t} is {_kind(team)}, not a list of ticket ids")
            players = 0
            for ticket_id in team:
                if type(ticket_id) is not str:
                    raise MatchFunctionError(f"{where}, team {t}: {_kind(ticket_id)} is not a ticket id string")
                ticket = queued.get(ticket_id)
                if ticket is None:
                    raise MatchFunctionError(f"{where}, team {t}: ticket {ticket_id!r} is not queued")
                if ticket_id in taken:
                    again = "" if taken[ticket_id] == p else f" (already in proposal {taken[ticket_id]})"
                    raise MatchFunctionError(f"{where}, team {t}: ticket {ticket_id!r} is used twice{again}")
                taken[ticket_id] = p
                players += ticket.size
                mmr = ticket.mmr
                if low is None or mmr < low:
                    low = mmr
                if high is None or mmr > high:
                    high = mmr
            if not smallest <= players <= largest:
                raise MatchFunctionError(
                    f"{where}, team {t} holds {players} players, the mode allows {bounds} per team")
            teams.append(tuple(team))
        proposals.append(Proposal(teams=tuple(teams), mmr_spread=float(high - low)))
    return proposals


def describe(function: Callable[..., Any]) -> str:
    """"module:qualname" of a function, for messages."""
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None) or type(function).__name__
    return f"{module}:{qualname}" if module else qualname


def _kind(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a foreign object's __repr__ may fail; the message must not
        text = "(unprintable)"
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
