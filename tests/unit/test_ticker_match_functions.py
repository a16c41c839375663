"""A mode with a match function, ticked against a real redis-server: its proposals are claimed
like the matcher's, and a function that raises or returns garbage is reported (log at ERROR,
which Sentry's logging integration sends; the tick's error count, a metric) while that mode
skips the tick and every other mode is still matched."""
import logging
import time

from mmserver.config import ModeConfig, ServersConfig
from mmserver.shutdown import Shutdown
from mmserver.store import Store
from mmserver.ticker import FUNCTION_ERROR_LOG_S, Ticker
from tests.store.invariants import check_invariants

CALLS = []


def broken(tickets, mode, now):
    CALLS.append(len(tickets))
    raise RuntimeError("the studio's bug")


def garbage(tickets, mode, now):
    return [[[tickets[0].ticket_id], [tickets[0].ticket_id]]]  # one ticket twice


def _store(redis_client, function):
    modes = {
        "levels": ModeConfig("levels", accept_timeout_s=0, attributes=(("level", "number"),),
                             match_function=function),
        "duel": ModeConfig("duel", accept_timeout_s=0),
    }
    return Store(redis_client, modes, ServersConfig(), retention_s=60), modes


def _create(store, player, mode, **attributes):
    view, token = store.create_ticket(player_id=player, mode=mode, mmr=1500, region=None, party=[],
                                      attributes=attributes or None)
    return view["ticket_id"], token


def test_a_match_functions_proposals_are_claimed(redis_client):
    store, modes = _store(redis_client, "tests.match_function_example:pair_by_level")
    a = _create(store, "a", "levels", level=10.0)
    b = _create(store, "b", "levels", level=12.0)
    far = _create(store, "c", "levels", level=90.0)
    result = Ticker(store, modes, shutdown=Shutdown(), mode_lock_s=0).tick()
    assert result.matches_claimed == 1 and result.match_function_errors == 0
    assert store.read_ticket(*a)["status"] == "matched"
    assert store.read_ticket(*b)["status"] == "matched"
    waiting = store.read_ticket(*far)
    assert waiting["status"] == "queued"
    assert waiting["matching"]["blocked_by"] == "match_function"
    check_invariants(redis_client)


def test_a_failing_function_is_reported_and_its_mode_skips_the_tick(redis_client, caplog):
    for function in ("tests.unit.test_ticker_match_functions:broken",
                     "tests.unit.test_ticker_match_functions:garbage"):
        redis_client.flushall()
        store, modes = _store(redis_client, function)
        levels = [_create(store, f"l{i}", "levels", level=10.0) for i in range(2)]
        duels = [_create(store, f"d{i}", "duel") for i in range(2)]
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="mmserver.ticker"):
            result = Ticker(store, modes, shutdown=Shutdown(), mode_lock_s=0).tick()
        assert result.match_function_errors == 1, function
        assert result.matches_claimed == 1  # the other mode still matched
        assert all(store.read_ticket(*t)["status"] == "queued" for t in levels)
        # What keeps them waiting is the function: their views say so.
        assert all(store.read_ticket(*t)["matching"]["blocked_by"] == "match_function" for t in levels)
        assert all(store.read_ticket(*t)["status"] == "matched" for t in duels)
        record = next(r for r in caplog.records if "match function of mode levels" in r.getMessage())
        assert record.levelno == logging.ERROR and record.exc_info is not None
        check_invariants(redis_client)
    assert CALLS  # the broken function was really called


def test_a_function_failing_every_tick_logs_its_traceback_once_a_minute(redis_client, caplog):
    """Five ticks a second of the same traceback flooded the log (and Sentry): the first is
    logged, the next ones counted, and the count goes with the next one logged."""
    store, modes = _store(redis_client, "tests.unit.test_ticker_match_functions:broken")
    _create(store, "l0", "levels", level=10.0)
    ticker = Ticker(store, modes, shutdown=Shutdown(), mode_lock_s=0)

    def reports() -> list[str]:
        return [r.getMessage() for r in caplog.records if "match function of mode levels" in r.getMessage()]

    with caplog.at_level(logging.ERROR, logger="mmserver.ticker"):
        for _ in range(3):
            assert ticker.tick().match_function_errors == 1  # the metric counts every one
        assert len(reports()) == 1
        quiet_until, held = ticker._function_errors["levels"]  # FUNCTION_ERROR_LOG_S from the first
        assert held == 2 and quiet_until > time.monotonic() + FUNCTION_ERROR_LOG_S - 30
        ticker._function_errors["levels"] = (time.monotonic(), held)  # as if the minute had passed
        ticker.tick()
    assert len(reports()) == 2 and reports()[1].endswith("(2 more failures since the last report)")
