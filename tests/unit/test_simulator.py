"""The simulator that settles test-mode mail: which address asks for which scenario, the reply
each gives at each attempt, and what the policy makes of that reply: the outcomes the README
promises, reached through the same rules as a relay's replies."""

from datetime import UTC, datetime, timedelta

import pytest

from deliveries.policy import (
    ReplyClass,
    RetryPolicy,
    Stage,
    classify,
    decide,
    is_hard_bounce,
    is_relay_fault,
)
from deliveries.simulator import (
    SIMULATOR_DOMAIN,
    SIMULATOR_RELAY,
    Scenario,
    Simulator,
    complains,
    scenario_of,
    simulated_reply,
)
from deliveries.smtp import Envelope
from deliveries.states import DeliveryStatus

S = DeliveryStatus
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(base_seconds=30, factor=2, cap_seconds=900, jitter=0, max_attempts=8)


def at(local: str) -> str:
    return f"{local}@{SIMULATOR_DOMAIN}"


def status_after(address: str, *, attempt: int) -> DeliveryStatus:
    """What the policy makes of the simulator's reply to ``address`` at ``attempt``."""
    reply = simulated_reply(address, attempt=attempt)
    return decide(
        reply_class=classify(reply),
        attempts=attempt,
        now=NOW,
        expires_at=NOW + timedelta(days=1),
        policy=POLICY,
        relay_fault=is_relay_fault(reply),
    ).status


@pytest.mark.parametrize(
    ("address", "scenario"),
    [
        (at("bounce"), Scenario.BOUNCE),
        (at("defer"), Scenario.DEFER),
        (at("complaint"), Scenario.COMPLAINT),
        (at("timeout"), Scenario.TIMEOUT),
        (at("deliver"), Scenario.DELIVER),
        # Anything after a + is the test's own, so each test can have addresses of its own.
        (at("bounce+signup-test-7"), Scenario.BOUNCE),
        (at("defer+"), Scenario.DEFER),
        # Case does not matter, in the local part or the domain.
        ("Bounce@Simulator.Mailhub.Test", Scenario.BOUNCE),
        # Not scripted: delivered.
        (at("ann"), Scenario.DELIVER),
        (at("bouncer"), Scenario.DELIVER),
        (at("x+bounce"), Scenario.DELIVER),
        ("bounce@example.com", Scenario.DELIVER),
        ("bounce@sub.simulator.mailhub.test", Scenario.DELIVER),
        ("ann@example.com", Scenario.DELIVER),
        ("no-at-sign", Scenario.DELIVER),
    ],
)
def test_the_local_part_at_the_simulator_domain_picks_the_scenario(address, scenario):
    assert scenario_of(address) is scenario


def test_an_address_not_scripted_is_delivered_with_a_250_on_the_first_attempt():
    reply = simulated_reply("ann@example.com", attempt=1)
    assert (reply.code, reply.enhanced_code, reply.stage) == (250, "2.0.0", Stage.DATA)
    assert "test mode" in reply.text and reply.relay == SIMULATOR_RELAY
    assert status_after("ann@example.com", attempt=1) == S.DELIVERED


def test_bounce_is_a_550_5_1_1_to_rcpt_a_hard_bounce_whose_address_is_suppressed():
    reply = simulated_reply(at("bounce"), attempt=1)
    assert (reply.code, reply.enhanced_code, reply.stage) == (550, "5.1.1", Stage.RCPT)
    assert classify(reply) is ReplyClass.PERMANENT and is_hard_bounce(reply)
    assert status_after(at("bounce"), attempt=1) == S.BOUNCED


def test_defer_is_a_451_on_the_first_attempt_and_a_250_on_the_next():
    first = simulated_reply(at("defer"), attempt=1)
    assert (first.code, first.enhanced_code, first.stage) == (451, "4.7.1", Stage.RCPT)
    assert not is_relay_fault(first)
    assert status_after(at("defer"), attempt=1) == S.DEFERRED
    assert simulated_reply(at("defer"), attempt=2).code == 250
    assert status_after(at("defer"), attempt=2) == S.DELIVERED
    assert status_after(at("defer"), attempt=5) == S.DELIVERED


def test_complaint_is_delivered_and_then_complains():
    assert simulated_reply(at("complaint"), attempt=1).code == 250
    assert status_after(at("complaint"), attempt=1) == S.DELIVERED
    assert complains(at("complaint")) and complains(at("complaint+x"))
    assert not any(complains(a) for a in [at("bounce"), at("ann"), "complaint@example.com"])


@pytest.mark.parametrize("attempt", [1, 2, 7])
def test_timeout_never_answers_and_is_retried_counting_its_attempts(attempt):
    reply = simulated_reply(at("timeout"), attempt=attempt)
    assert reply.code is None and reply.stage is Stage.DATA
    # A timeout after the recipient was named: the message's own failure, not the relay's, so
    # every attempt counts and the rest of the worker's batch is not deferred with it.
    assert not is_relay_fault(reply)
    assert status_after(at("timeout"), attempt=attempt) == S.DEFERRED


def test_timeout_fails_when_the_retry_policy_gives_up():
    assert status_after(at("timeout"), attempt=POLICY.max_attempts) == S.FAILED


def test_the_simulator_answers_every_recipient_of_an_envelope_by_its_attempt():
    envelope = Envelope(
        sender="no-reply@shop.test",
        recipients=["ann@example.com", at("bounce"), at("defer"), at("timeout")],
        content=b"Subject: hi\r\n\r\nhi\r\n",
    )
    simulator = Simulator(attempts={at("defer"): 2})

    replies = simulator.send(envelope, deadline=0.0)  # a deadline long past: nothing waits

    assert {address: reply.code for address, reply in replies.items()} == {
        "ann@example.com": 250,
        at("bounce"): 550,
        at("defer"): 250,  # its second attempt
        at("timeout"): None,
    }
    assert {reply.relay for reply in replies.values()} == {SIMULATOR_RELAY}
    simulator.close()  # holds nothing; closing is allowed, like a transport's
