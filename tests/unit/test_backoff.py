import random

import pytest

from mmserver.backoff import EQUAL_JITTER, Backoff


def test_defaults_double_from_one_second_and_cap_at_sixty():
    backoff = Backoff(1000, 60000, 10, jitter=0)
    assert backoff.attempts == 10
    assert backoff.schedule() == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]


def test_first_reconnect_waits_the_initial_delay():
    assert Backoff(50, 200, 3, jitter=0).delay(0) == pytest.approx(0.05)
    assert Backoff(50, 200, 3, jitter=0).schedule() == pytest.approx([0.05, 0.1, 0.2])


def test_cap_holds_for_large_attempt_numbers():
    backoff = Backoff(1000, 60000, 10, jitter=0)
    assert backoff.delay(100) == 60
    assert backoff.delay(10_000) == 60


def test_cap_that_is_not_a_power_of_two_multiple():
    assert Backoff(300, 1000, 5, jitter=0).schedule() == pytest.approx([0.3, 0.6, 1.0, 1.0, 1.0])


def test_zero_attempts_means_give_up_at_once():
    backoff = Backoff(1000, 60000, 0)
    assert backoff.attempts == 0
    assert backoff.schedule() == []


def test_jitter_only_shortens_and_stays_within_its_fraction():
    backoff = Backoff(1000, 8000, 20, jitter=0.2, rng=random.Random(7))
    exact = Backoff(1000, 8000, 20, jitter=0).schedule()
    jittered = backoff.schedule()
    assert all(0.8 * e <= j <= e for e, j in zip(exact, jittered))
    assert jittered != exact


@pytest.mark.parametrize("args", [(0, 10, 1), (10, 5, 1), (10, 20, -1)])
def test_invalid_arguments_are_refused(args):
    with pytest.raises(ValueError):
        Backoff(*args)


def test_negative_attempt_is_refused():
    with pytest.raises(ValueError):
        Backoff(1, 2, 1).delay(-1)


def test_reconnects_are_jittered_by_default_so_replicas_spread_out():
    # 200 replicas that lost Redis in the same instant, each with its own generator (as each
    # process has): with the default Backoff (what the service builds) their first and fifth
    # reconnects spread uniformly over [d/2, d] instead of all landing on d.
    replicas = [Backoff(1000, 60000, 10, rng=random.Random(seed)) for seed in range(200)]
    for attempt, exact in ((0, 1.0), (4, 16.0)):
        delays = sorted(backoff.delay(attempt) for backoff in replicas)
        assert exact / 2 <= delays[0] and delays[-1] <= exact
        # Every tenth of [d/2, d] gets some replicas, none gets a crowd (uniform: 20 each).
        bins = [0] * 10
        for delay in delays:
            bins[min(9, int((delay - exact / 2) / (exact / 20)))] += 1
        assert min(bins) >= 8 and max(bins) <= 35, bins
        # No instant holds more than a few of them: the largest group within 1% of d.
        window = exact / 100
        crowd = max(sum(1 for other in delays if d <= other < d + window) for d in delays)
        assert crowd <= 12
    assert Backoff(1000, 60000, 10).jitter == EQUAL_JITTER


def test_the_default_generators_differ_between_backoffs():
    # Without a seeded rng two replicas must not draw the same sequence.
    first, second = Backoff(1000, 60000, 10), Backoff(1000, 60000, 10)
    assert first.schedule() != second.schedule()
