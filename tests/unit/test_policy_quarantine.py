"""What becomes of a delivery whose attempt was lost: retried, or quarantined once too many were."""

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from deliveries import conf
from deliveries.policy import RetryPolicy, decide_lost
from deliveries.states import DeliveryStatus

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = RetryPolicy(base_seconds=30, factor=2, cap_seconds=900, jitter=0, max_attempts=8)


def lost(*, attempts=1, lost_attempts=1, quarantine_after=3, expires_at=NOW + timedelta(hours=1)):
    return decide_lost(
        attempts=attempts,
        lost_attempts=lost_attempts,
        quarantine_after=quarantine_after,
        now=NOW,
        expires_at=expires_at,
        policy=POLICY,
        rand=lambda: 0.0,
    )


@pytest.mark.parametrize("lost_attempts", [1, 2])
def test_a_lost_attempt_below_the_threshold_is_retried_after_the_backoff(lost_attempts):
    decision = lost(attempts=lost_attempts, lost_attempts=lost_attempts)
    assert decision.status == DeliveryStatus.DEFERRED
    assert decision.next_attempt_at == NOW + POLICY.delay(lost_attempts)


@pytest.mark.parametrize("lost_attempts", [3, 4])
def test_the_third_lost_attempt_quarantines_the_delivery(lost_attempts):
    decision = lost(attempts=lost_attempts, lost_attempts=lost_attempts)
    assert decision.status == DeliveryStatus.FAILED
    assert decision.next_attempt_at is None
    assert decision.reason.startswith(f"quarantined: {lost_attempts} attempts were lost")


def test_only_lost_attempts_count_towards_quarantine_not_deferred_ones():
    assert lost(attempts=7, lost_attempts=1).status == DeliveryStatus.DEFERRED


def test_a_lost_attempt_still_uses_up_the_attempts_and_the_lifetime():
    assert lost(attempts=8, lost_attempts=1).reason == "gave up after 8 attempts"
    expiring = lost(expires_at=NOW + timedelta(seconds=1))
    assert expiring.status == DeliveryStatus.FAILED
    assert expiring.reason == "message lifetime exceeded"


def test_a_threshold_of_one_quarantines_at_the_first_lost_attempt():
    assert lost(quarantine_after=1).status == DeliveryStatus.FAILED


def test_the_default_threshold_is_three_and_read_through_conf():
    assert settings.MAILHUB_QUARANTINE_AFTER_LOST_ATTEMPTS == 3
    assert conf.quarantine_after_lost() == 3
