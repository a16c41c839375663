"""Token buckets and the Retry-After they give (mmserver/ratelimit.py), on a fake clock."""
from __future__ import annotations

from mmserver.ratelimit import MAX_RETRY_AFTER_S, TokenBuckets, retry_after


def test_retry_after_is_whole_seconds_from_one_to_a_day():
    assert [retry_after(w) for w in (0.0, 0.2, 1.0, 1.01, 3600.0)] == ["1", "1", "1", "2", "3600"]
    assert retry_after(1e300) == retry_after(float("inf")) == str(MAX_RETRY_AFTER_S)


def test_a_tiny_configured_rate_still_gives_a_bounded_retry_after():
    now = [0.0]
    buckets = TokenBuckets(1e-300, 1, clock=lambda: now[0])
    assert buckets.take("k") == 0.0  # the burst
    assert retry_after(buckets.take("k")) == str(MAX_RETRY_AFTER_S)
