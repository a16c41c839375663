"""Match functions: loading "module:function", the read-only views, and the shape checks."""
from __future__ import annotations

import dataclasses
import signal
import types
from pathlib import Path

import pytest

from mmserver.config import ModeConfig
from mmserver.matchmaking import functions
from mmserver.matchmaking.functions import MatchFunctionError, TicketView
from mmserver.matchmaking.model import Proposal, QueuedTicket
from tests import match_function_example

NOW = 1_000.0
DUEL = ModeConfig(name="duel-by-level", team_size=1, teams=2, attributes=(("level", "number"),),
                  match_function="tests.match_function_example:pair_by_level")


def ticket(ticket_id: str, mmr: float = 1000.0, size: int = 1, waited_s: float = 0.0, **fields) -> QueuedTicket:
    players = fields.pop("players", tuple(f"{ticket_id}-p{i}" for i in range(size)))
    return QueuedTicket(ticket_id, mmr, size, NOW - waited_s, players=players, **fields)


def level(ticket_id: str, value: float, mmr: float = 1000.0, waited_s: float = 0.0) -> QueuedTicket:
    return ticket(ticket_id, mmr, waited_s=waited_s, attributes={"level": value})


def returning(value):
    def propose(tickets, mode, now):
        return value
    return propose


# --- load ---

def test_load_imports_module_colon_function():
    assert functions.load("tests.match_function_example:pair_by_level") is match_function_example.pair_by_level


def test_load_follows_a_dotted_attribute():
    assert functions.load("types:SimpleNamespace.__init__") is types.SimpleNamespace.__init__


@pytest.mark.parametrize("spec, fragment", [
    ("tests.match_function_example", 'not of the form "module:function"'),
    (":pair_by_level", 'not of the form "module:function"'),
    ("tests.match_function_example:", 'not of the form "module:function"'),
    ("tests.no_such_module:propose", "cannot import module 'tests.no_such_module': ModuleNotFoundError"),
    ("tests.match_function_example:no_such", "has no attribute 'no_such'"),
    ("tests.match_function_example:MAX_GAP", "is not callable (a float)"),
])
def test_load_refuses_with_a_clear_line(spec, fragment):
    with pytest.raises(MatchFunctionError) as caught:
        functions.load(spec)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_load_reports_an_error_raised_while_importing(tmp_path, monkeypatch):
    (tmp_path / "broken_matching.py").write_text("raise RuntimeError('no database\\nconfigured')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MatchFunctionError) as caught:
        functions.load("broken_matching:propose")
    assert str(caught.value) == ("cannot import module 'broken_matching': RuntimeError: no database configured")
    assert isinstance(caught.value.__cause__, RuntimeError)


@pytest.mark.parametrize("body, reason", [
    ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
    ("import sys\nsys.exit()\n", "SystemExit"),
    ("raise KeyboardInterrupt\n", "KeyboardInterrupt"),
])
def test_load_refuses_a_module_that_exits_or_interrupts_at_import(tmp_path, monkeypatch, body, reason):
    (tmp_path / "exiting_matching.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MatchFunctionError) as caught:
        functions.load("exiting_matching:propose")
    assert str(caught.value) == f"cannot import module 'exiting_matching': {reason}"


def test_a_real_sigint_during_the_import_still_interrupts(tmp_path, monkeypatch):
    (tmp_path / "slow_matching.py").write_text(
        "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # Python's own handler, whatever an earlier test of this process left in place (a
    # replica's handler requests a stop instead of raising).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            functions.load("slow_matching:propose")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    finally:
        signal.signal(signal.SIGINT, before)


# --- what the function sees ---

def test_the_function_sees_read_only_views_the_mode_and_now():
    seen = {}

    def propose(tickets, mode, now):
        seen.update(tickets=tickets, mode=mode, now=now)
        return []

    party = ticket("t2", 1200.0, size=2, waited_s=7.5, players=("alice", "bob"),
                   attributes={"level": 3.0}, latencies={"eu-west": 35.0}, roles=(("tank",), ("dps", "healer")),
                   region="eu-west")
    assert functions.run(propose, [ticket("t1", waited_s=2.0), party], DUEL, NOW) == []
    assert seen["mode"] is DUEL and seen["now"] == NOW
    first, second = seen["tickets"]
    assert first == TicketView("t1", 1000.0, 1, ("t1-p0",), {}, {}, (), 2.0, None)
    assert second == TicketView("t2", 1200.0, 2, ("alice", "bob"), {"level": 3.0}, {"eu-west": 35.0},
                                (("tank",), ("dps", "healer")), 7.5, "eu-west")
    assert (second.ticket_id, second.mmr, second.size, second.waited_s) == ("t2", 1200.0, 2, 7.5)
    with pytest.raises(AttributeError):
        second.mmr = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        second.attributes["level"] = 99  # type: ignore[index]
    with pytest.raises(TypeError):
        second.latencies["us-east"] = 1  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        seen["mode"].teams = 3  # type: ignore[misc]


# --- valid answers ---

def test_the_example_pairs_close_levels_into_proposals():
    tickets = [level("a", 10, mmr=1500), level("b", 40), level("c", 12, mmr=1400), level("d", 41, mmr=900),
               level("e", 90), ticket("party", size=2, attributes={"level": 90.0}), ticket("nolevel")]
    proposals = functions.run(match_function_example.pair_by_level, tickets, DUEL, NOW)
    assert proposals == [
        Proposal(teams=(("a",), ("c",)), mmr_spread=100.0),
        Proposal(teams=(("b",), ("d",)), mmr_spread=100.0),
    ]
    assert all(isinstance(p, Proposal) for p in proposals)


def test_the_example_widens_the_gap_with_waiting():
    far = [level("a", 10), level("b", 20)]
    assert functions.run(match_function_example.pair_by_level, far, DUEL, NOW) == []
    waited = [level("a", 10, waited_s=10.0), level("b", 20)]
    assert [p.teams for p in functions.run(match_function_example.pair_by_level, waited, DUEL, NOW)] == [
        (("a",), ("b",))]


def test_variable_team_sizes_and_parties_within_bounds_are_accepted():
    lobby = ModeConfig(name="royale", teams=1, team_size=6, min_team_size=3)
    tickets = [ticket("squad", 1100.0, size=3), ticket("duo", 1300.0, size=2), ticket("solo", 1000.0),
               ticket("trio", 900.0, size=3)]
    result = functions.run(returning([[("squad", "duo", "solo")], (["trio"],)]), tickets, lobby, NOW)
    assert result == [Proposal(teams=(("squad", "duo", "solo"),), mmr_spread=300.0),
                      Proposal(teams=(("trio",),), mmr_spread=0.0)]


def test_an_empty_answer_is_no_match():
    assert functions.run(returning([]), [level("a", 1)], DUEL, NOW) == []
    assert functions.run(returning(()), [], DUEL, NOW) == []


# --- garbage ---

TICKETS = [level("a", 1), level("b", 2), level("c", 3), ticket("party", size=2)]


@pytest.mark.parametrize("answer, fragment", [
    (None, "returned NoneType None, not a list of proposals"),
    ({"a": "b"}, "returned dict"),
    ("ab", "returned str 'ab', not a list of proposals"),
    (iter([[["a"], ["b"]]]), "not a list of proposals"),
    ([None], "proposal 0 is NoneType None, not a list of teams"),
    (["ab"], "proposal 0 is str 'ab', not a list of teams"),
    ([{"a": 1, "b": 2}], "proposal 0 is dict"),
    ([[["a"]]], "proposal 0 has 1 teams, the mode plays 2"),
    ([[["a"], ["b"], ["c"]]], "proposal 0 has 3 teams, the mode plays 2"),
    ([[["a"], "b"]], "proposal 0, team 1 is str 'b', not a list of ticket ids"),
    ([[["a"], {"b"}]], "proposal 0, team 1 is set"),
    ([[["a"], [2]]], "proposal 0, team 1: int 2 is not a ticket id string"),
    ([[["a"], [["b"]]]], "proposal 0, team 1: list ['b'] is not a ticket id string"),
    ([[["a"], ["zzz"]]], "proposal 0, team 1: ticket 'zzz' is not queued"),
    ([[["a"], ["a"]]], "proposal 0, team 1: ticket 'a' is used twice"),
    ([[["a"], ["b"]], [["c"], ["b"]]], "proposal 1, team 1: ticket 'b' is used twice (already in proposal 0)"),
    ([[["a", "b"], ["c"]]], "proposal 0, team 0 holds 2 players, the mode allows 1 per team"),
    ([[[], ["c"]]], "proposal 0, team 0 holds 0 players, the mode allows 1 per team"),
    ([[["party"], ["c"]]], "proposal 0, team 0 holds 2 players"),
    ([[["a"], ["b"]], None], "proposal 1 is NoneType"),
])
def test_garbage_is_a_match_function_error(answer, fragment):
    with pytest.raises(MatchFunctionError) as caught:
        functions.run(returning(answer), TICKETS, DUEL, NOW)
    message = str(caught.value)
    assert fragment in message
    assert "propose" in message  # names the function
    assert "\n" not in message


def test_team_sizes_outside_a_variable_range_are_refused():
    mode = ModeConfig(name="squads", teams=2, team_size=4, min_team_size=2)
    tickets = [ticket("p3", size=3), ticket("p2", size=2), ticket("s1"), ticket("s2"), ticket("p4", size=4)]
    assert len(functions.run(returning([[["p3"], ["p2"]]]), tickets, mode, NOW)) == 1
    with pytest.raises(MatchFunctionError, match="team 1 holds 1 players, the mode allows 2 to 4 per team"):
        functions.run(returning([[["p3"], ["s1"]]]), tickets, mode, NOW)
    with pytest.raises(MatchFunctionError, match="team 0 holds 5 players, the mode allows 2 to 4 per team"):
        functions.run(returning([[["p4", "s1"], ["p2"]]]), tickets, mode, NOW)


def test_a_raising_function_is_wrapped_with_its_cause():
    original = KeyError("level")

    def propose(tickets, mode, now):
        raise original

    with pytest.raises(MatchFunctionError) as caught:
        functions.run(propose, TICKETS, DUEL, NOW)
    assert caught.value.__cause__ is original
    assert "propose raised KeyError: 'level'" in str(caught.value)


def test_a_value_with_a_failing_repr_still_gives_a_clear_error():
    class Odd:
        def __repr__(self):
            raise RuntimeError("no repr")

    with pytest.raises(MatchFunctionError, match="returned Odd \\(unprintable\\), not a list of proposals"):
        functions.run(returning(Odd()), TICKETS, DUEL, NOW)


def test_the_documented_example_is_the_tested_one():
    docs = (Path(__file__).parents[2] / "docs" / "MATCH_RULES.md").read_text()
    section = docs.split("## Match functions", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    example = Path(match_function_example.__file__).read_text()
    assert code.strip() and code in example
    assert code.startswith("MAX_GAP") and example.rstrip().endswith(code.rstrip())
