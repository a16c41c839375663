import random

import pytest

from mmserver.backoff import Backoff


def test_defaults_double_from_one_second_and_cap_at_sixty():
    backoff = Backoff(1000, 60000, 10)
    assert backoff.attempts == 10
    assert backoff.schedule() == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]


def test_first_reconnect_waits_the_initial_delay():
    assert Backoff(50, 200, 3).delay(0) == pytest.approx(0.05)
    assert Backoff(50, 200, 3).schedule() == pytest.approx([0.05, 0.1, 0.2])


def test_cap_holds_for_large_attempt_numbers():
    backoff = Backoff(1000, 60000, 10)
    assert backoff.delay(100) == 60
    assert backoff.delay(10_000) == 60


def test_cap_that_is_not_a_power_of_two_multiple():
    assert Backoff(300, 1000, 5).schedule() == pytest.approx([0.3, 0.6, 1.0, 1.0, 1.0])


def test_zero_attempts_means_give_up_at_once():
    backoff = Backoff(1000, 60000, 0)
    assert backoff.attempts == 0
    assert backoff.schedule() == []


def test_jitter_only_shortens_and_stays_within_its_fraction():
    backoff = Backoff(1000, 8000, 20, jitter=0.2, rng=random.Random(7))
    exact = Backoff(1000, 8000, 20).schedule()
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
