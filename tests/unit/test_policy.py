"""What an SMTP reply means, how long to wait before the next try, and when to give up."""

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from deliveries import conf
from deliveries.policy import (
    ReplyClass,
    RetryPolicy,
    SmtpReply,
    Stage,
    classify,
    decide,
)
from deliveries.states import DeliveryStatus

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(base_seconds=30, factor=2, cap_seconds=900, jitter=0.2, max_attempts=8)


def no_jitter() -> float:
    return 0.0


def full_jitter() -> float:
    return 1.0


# -- classify ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [250, 251, 221])
@pytest.mark.parametrize("stage", [Stage.MAIL, Stage.RCPT, Stage.DATA])
def test_a_2xx_reply_is_a_success(code, stage):
    assert classify(SmtpReply(code, "2.0.0 OK", stage)) is ReplyClass.SUCCESS


@pytest.mark.parametrize("code", [421, 450, 451, 452])
@pytest.mark.parametrize("stage", [Stage.MAIL, Stage.RCPT, Stage.DATA])
def test_a_4xx_reply_is_temporary(code, stage):
    assert classify(SmtpReply(code, "4.3.0 try later", stage)) is ReplyClass.TEMPORARY


@pytest.mark.parametrize("code", [500, 550, 551, 553, 554])
@pytest.mark.parametrize("stage", [Stage.MAIL, Stage.RCPT, Stage.DATA])
def test_a_5xx_reply_is_permanent(code, stage):
    assert classify(SmtpReply(code, "5.1.1 User unknown", stage)) is ReplyClass.PERMANENT


@pytest.mark.parametrize(
    "text", ["timed out", "connection refused", "server disconnected unexpectedly"]
)
@pytest.mark.parametrize("stage", list(Stage))
def test_no_reply_at_all_is_temporary(text, stage):
    assert classify(SmtpReply(None, text, stage)) is ReplyClass.TEMPORARY


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (554, "5.7.1 Relay access denied to your IP"),
        (535, "5.7.8 Authentication credentials invalid"),
        (530, "5.7.0 Must issue a STARTTLS command first"),
        (421, "4.3.2 Service not available"),
    ],
)
def test_any_failure_while_connecting_is_temporary(code, text):
    # The relay refused us, not the recipient: bouncing would wrongly blame the address.
    assert classify(SmtpReply(code, text, Stage.CONNECT)) is ReplyClass.TEMPORARY


def test_a_552_to_rcpt_is_temporary_because_it_means_too_many_recipients():
    assert classify(SmtpReply(552, "Too many recipients", Stage.RCPT)) is ReplyClass.TEMPORARY


def test_a_552_to_data_is_permanent_because_the_message_is_too_big():
    reply = SmtpReply(552, "5.3.4 Message size exceeds limit", Stage.DATA)
    assert classify(reply) is ReplyClass.PERMANENT


@pytest.mark.parametrize(
    ("code", "stage"),
    [(354, Stage.RCPT), (354, Stage.MAIL), (600, Stage.DATA), (199, Stage.DATA), (0, Stage.MAIL)],
)
def test_a_code_outside_the_protocol_is_temporary(code, stage):
    assert classify(SmtpReply(code, "what?", stage)) is ReplyClass.TEMPORARY


# -- enhanced status codes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5.1.1 User unknown", "5.1.1"),
        ("4.7.0 Greylisted, try again", "4.7.0"),
        ("2.0.0", "2.0.0"),
        ("5.7.26 Unauthenticated email is not accepted", "5.7.26"),
    ],
)
def test_the_enhanced_code_is_read_from_the_start_of_the_reply(text, expected):
    assert SmtpReply(550, text, Stage.RCPT).enhanced_code == expected


@pytest.mark.parametrize(
    "text",
    [
        "User unknown",
        "5.1 x",
        "1.2.3 x",
        "User 5.1.1 unknown",
        "5.1.1x glued to a word",
        "",
    ],
)
def test_a_reply_without_an_enhanced_code_has_none(text):
    assert SmtpReply(550, text, Stage.RCPT).enhanced_code == ""


# -- RetryPolicy.delay -------------------------------------------------------------------------


def test_the_first_retry_waits_the_base_delay():
    assert POLICY.delay(1, rand=no_jitter) == timedelta(seconds=30)


def test_each_retry_waits_factor_times_longer_than_the_one_before():
    delays = [POLICY.delay(n, rand=no_jitter).total_seconds() for n in range(1, 6)]
    assert delays == [30, 60, 120, 240, 480]


@pytest.mark.parametrize("attempt", [6, 7, 8, 20, 64, 65, 200])
def test_a_retry_never_waits_longer_than_the_cap(attempt):
    assert POLICY.delay(attempt, rand=no_jitter) == timedelta(seconds=900)


@pytest.mark.parametrize("attempt", [1, 3, 10])
def test_jitter_shortens_the_wait_by_at_most_the_jitter_fraction(attempt):
    full = POLICY.delay(attempt, rand=no_jitter)
    shortest = POLICY.delay(attempt, rand=full_jitter)
    assert shortest == full * (1 - POLICY.jitter)
    for draw in (0.1, 0.5, 0.99):
        assert shortest <= POLICY.delay(attempt, rand=lambda d=draw: d) <= full


def test_jitter_never_makes_the_wait_longer_or_negative_even_when_misconfigured():
    wild = RetryPolicy(base_seconds=30, factor=2, cap_seconds=900, jitter=5, max_attempts=8)
    assert wild.delay(1, rand=full_jitter) == timedelta(0)
    negative = RetryPolicy(base_seconds=30, factor=2, cap_seconds=900, jitter=-1, max_attempts=8)
    assert negative.delay(1, rand=full_jitter) == timedelta(seconds=30)


def test_a_huge_attempt_number_does_not_overflow():
    assert POLICY.delay(1000, rand=no_jitter) == timedelta(seconds=900)
    assert POLICY.delay(10**9, rand=full_jitter) == timedelta(seconds=720)


@pytest.mark.parametrize("attempt", [0, -1])
def test_there_is_no_delay_before_the_first_attempt(attempt):
    with pytest.raises(ValueError):
        POLICY.delay(attempt, rand=no_jitter)


def test_the_default_schedule_fits_inside_the_message_lifetime():
    # settings.py documents it: "seven retries span about 45 minutes, inside the 1 h lifetime".
    policy = conf.retry_policy()
    assert policy.base_seconds == settings.MAILHUB_RETRY_BASE_SECONDS
    assert policy.max_attempts == settings.MAILHUB_MAX_ATTEMPTS
    longest_waits = [
        policy.delay(n, rand=no_jitter).total_seconds() for n in range(1, policy.max_attempts)
    ]
    assert len(longest_waits) == settings.MAILHUB_MAX_ATTEMPTS - 1
    assert sum(longest_waits) < settings.MAILHUB_MESSAGE_LIFETIME_SECONDS


# -- decide ------------------------------------------------------------------------------------


def decision(reply_class, *, attempts=1, expires_at=NOW + timedelta(hours=1), rand=no_jitter):
    return decide(
        reply_class=reply_class,
        attempts=attempts,
        now=NOW,
        expires_at=expires_at,
        policy=POLICY,
        rand=rand,
    )


def test_a_success_delivers():
    result = decision(ReplyClass.SUCCESS)
    assert result.status == DeliveryStatus.DELIVERED
    assert result.next_attempt_at is None


def test_a_success_on_the_last_attempt_still_delivers():
    result = decision(ReplyClass.SUCCESS, attempts=POLICY.max_attempts)
    assert result.status == DeliveryStatus.DELIVERED


@pytest.mark.parametrize("attempts", [1, 3, 8])
def test_a_permanent_failure_bounces_and_is_never_retried(attempts):
    result = decision(ReplyClass.PERMANENT, attempts=attempts)
    assert result.status == DeliveryStatus.BOUNCED
    assert result.next_attempt_at is None


@pytest.mark.parametrize(("attempts", "wait"), [(1, 30), (2, 60), (5, 480), (7, 900)])
def test_a_temporary_failure_defers_until_now_plus_the_delay(attempts, wait):
    result = decision(ReplyClass.TEMPORARY, attempts=attempts)
    assert result.status == DeliveryStatus.DEFERRED
    assert result.next_attempt_at == NOW + timedelta(seconds=wait)


def test_a_deferral_uses_the_jittered_delay():
    result = decision(ReplyClass.TEMPORARY, attempts=1, rand=full_jitter)
    assert result.next_attempt_at == NOW + timedelta(seconds=24)


@pytest.mark.parametrize("attempts", [8, 9])
def test_a_temporary_failure_on_the_last_attempt_fails_the_delivery(attempts):
    result = decision(ReplyClass.TEMPORARY, attempts=attempts)
    assert result.status == DeliveryStatus.FAILED
    assert result.next_attempt_at is None
    assert str(attempts) in result.reason


def test_a_temporary_failure_whose_retry_would_come_after_expiry_fails_the_delivery():
    result = decision(ReplyClass.TEMPORARY, attempts=3, expires_at=NOW + timedelta(seconds=119))
    assert result.status == DeliveryStatus.FAILED
    assert result.next_attempt_at is None
    assert "lifetime" in result.reason


def test_a_retry_due_just_before_expiry_is_still_deferred():
    result = decision(ReplyClass.TEMPORARY, attempts=3, expires_at=NOW + timedelta(seconds=121))
    assert result.status == DeliveryStatus.DEFERRED
    assert result.next_attempt_at == NOW + timedelta(seconds=120)


def test_a_relay_fault_defers_even_when_the_attempts_are_used_up():
    from datetime import UTC, datetime, timedelta

    from deliveries.policy import ReplyClass, RetryPolicy, decide
    from deliveries.states import DeliveryStatus

    policy = RetryPolicy(base_seconds=30, factor=2, cap_seconds=900, jitter=0, max_attempts=3)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    common = {"now": now, "expires_at": now + timedelta(hours=1), "policy": policy}

    counted = decide(reply_class=ReplyClass.TEMPORARY, attempts=3, **common)
    relay = decide(reply_class=ReplyClass.TEMPORARY, attempts=3, relay_fault=True, **common)

    assert counted.status == DeliveryStatus.FAILED
    assert relay.status == DeliveryStatus.DEFERRED


def test_a_relay_fault_on_the_first_attempt_waits_the_base_delay():
    from datetime import UTC, datetime, timedelta

    from deliveries.policy import ReplyClass, RetryPolicy, decide

    policy = RetryPolicy(base_seconds=30, factor=2, cap_seconds=900, jitter=0, max_attempts=3)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    decision = decide(
        reply_class=ReplyClass.TEMPORARY,
        attempts=0,
        relay_fault=True,
        now=now,
        expires_at=now + timedelta(hours=1),
        policy=policy,
    )
    assert decision.next_attempt_at == now + timedelta(seconds=30)
