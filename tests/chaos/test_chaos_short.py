"""A short seeded chaos run inside `make test`: 2 replicas, every kind of fault, zero violations.

Deselect with `-m "not chaos"`. The long run and its figures: docs/RELIABILITY.md.
"""
from __future__ import annotations

import pytest

from tests.chaos.faults import KINDS
from tests.chaos.report import table
from tests.chaos.run import Options, run

SEED = 20261127


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_short_chaos_run_loses_duplicates_and_strands_nothing(tmp_path):
    result = run(Options(seed=SEED, duration_s=70, replicas=2, faults=11, workdir=tmp_path))
    summary = table(result)
    assert result["violations"]["count"] == 0, summary
    # The run really exercised what it claims to: every kind of fault, real traffic, real exits.
    assert set(result["faults"]["injected"]) == set(KINDS), summary
    assert result["tickets"]["acknowledged"] >= 50, summary
    assert result["tickets"]["final_status"].get("finished", 0) >= 10, summary
    statuses = result["exits"]["by_status"]
    assert {"signal 9", "exit 0", "exit 1"} <= set(statuses), summary
    assert "exit 2" not in statuses, summary
    # Webhooks went to a receiver refusing some first tries: every event of the log arrived.
    traffic = result["traffic"]
    assert traffic["webhook_events"] > 200 and traffic["webhook_delivered"] == traffic["webhook_events"], traffic
    assert traffic["webhook_refused_first_tries"] > 0, traffic
    # Servers lost players and asked for others, and the matcher filled some of those places.
    assert traffic.get("servers_leave_200", 0) > 0 and traffic.get("servers_backfill_201", 0) > 0, traffic
    assert traffic["webhook_backfills_filled"] > 0, traffic
