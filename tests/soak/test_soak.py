"""A short soak (about 20 s) inside `make test`; `make soak` runs the long one (docs/HOSTILE.md)."""
from __future__ import annotations

import math

import pytest

from tests.soak.run import REQUIRED_OPS, percentile, soak


@pytest.mark.slow
def test_short_soak_has_no_errors_and_flat_memory(tmp_path):
    report = soak(tmp_path, duration_s=15, rate=40, longpolls=8, longpoll_wait_s=5)
    print("\n".join(report.lines()))
    assert report.errors == 0, report.lines()
    assert report.service_alive and not report.service_errors, report.lines()
    # the paced load really ran: nearly every slot became a request
    assert report.requests >= 0.9 * 15 * 40, report.lines()
    for op in REQUIRED_OPS + ("longpoll",):
        assert report.stats.latencies[op], f"{op} never ran"
        assert math.isfinite(percentile(report.stats.latencies[op], 0.99))
    # held long-polls waited their full time instead of being answered at once
    assert report.stats.longpoll_early == 0, report.lines()
    assert len(report.rss) >= 10
    assert report.rss_growth <= 0.10, report.lines()
    assert report.passed
