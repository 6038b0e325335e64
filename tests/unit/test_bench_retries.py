"""The benchmark's retry arithmetic: waits between attempts, held to the backoff policy."""

from datetime import UTC, datetime, timedelta

from benchmarks.retries import AttemptTimes, policy_bounds, retry_waits
from deliveries.policy import RetryPolicy

POLICY = RetryPolicy(base_seconds=30, factor=2, cap_seconds=900, jitter=0.2, max_attempts=8)
T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_policy_bounds_are_the_jittered_and_the_full_delay():
    assert policy_bounds(POLICY, 1) == (24.0, 30.0)
    assert policy_bounds(POLICY, 2) == (48.0, 60.0)
    assert policy_bounds(POLICY, 10) == (720.0, 900.0)  # capped


def test_a_wait_runs_from_the_end_of_an_attempt_to_the_start_of_the_next():
    attempts = [
        AttemptTimes(7, 2, at(40.0), 500),
        AttemptTimes(7, 1, at(0.0), 1000),
        AttemptTimes(8, 1, at(0.0), None),  # never retried: no wait
    ]

    (wait,) = retry_waits(attempts, POLICY)

    assert wait.after_attempt == 1
    assert wait.seconds == 39.0
    assert (wait.lowest, wait.highest) == (24.0, 30.0)
    assert wait.within(slack=10.0) and not wait.within(slack=5.0)


def test_a_retry_sooner_than_the_policy_allows_is_never_within():
    (wait,) = retry_waits([AttemptTimes(1, 1, at(0), 0), AttemptTimes(1, 2, at(20), 0)], POLICY)
    assert not wait.within(slack=1000)
