"""The SMTP server misbehaving in every way a relay does, for a while, then coming back."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from deliveries.models import Attempt, Delivery
from deliveries.states import DeliveryStatus
from tests.chaos.stack import chaos_stack, settle, sinks
from tests.support.sink import (
    CONNECT_421,
    DROP,
    HANG,
    MAIL_421,
    RCPT_451,
    RCPT_452,
    RCPT_550,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MESSAGES = 1000
RECIPIENTS = 2  # so that "452 too many recipients" has a second recipient to refuse
FAULTS = {
    CONNECT_421: "421 at connect",
    MAIL_421: "421 at MAIL",
    RCPT_451: "451 at RCPT",
    RCPT_452: "452 at RCPT",
    RCPT_550: "550 at RCPT",
    DROP: "drop in DATA",
    HANG: "hang in DATA",
}
FRACTION = 0.5
FAULT_SECONDS = 25


def test_a_misbehaving_smtp_server_defers_or_bounces_each_recipient_and_loses_none(actor):
    """Half the transactions meet one of: 421 to EHLO/HELO (the relay refuses the client), 421
    to MAIL, 451 to RCPT, 452 too many recipients, 550 to RCPT, the connection dropped after
    the message was sent, or no answer to it for longer than the client waits. Then the server
    behaves again. Temporary failures are retried until delivered, 550s bounce, and a refusal
    at connection time costs the message no attempt."""
    env = {
        "MAILHUB_SMTP_DATA_TIMEOUT_SECONDS": "1.5",  # the sink hangs for 3 s
        "MAILHUB_RELAY_COOLDOWN_SECONDS": "1",
        "MAILHUB_MAX_ATTEMPTS": "10",
    }
    with sinks() as [sink], chaos_stack("smtp", MAILHUB_SMTP_URL=sink.url, **env) as stack:
        stack.start_worker(name="a")
        stack.start_worker(beat=True, name="b")
        sink.fail_randomly(list(FAULTS), fraction=FRACTION, seed=6)
        stack.accept(actor.client, MESSAGES, tag="smtp", recipients=RECIPIENTS)
        deadline = time.monotonic() + FAULT_SECONDS
        while time.monotonic() < deadline and len(sink.received) < MESSAGES // 2:
            time.sleep(0.2)
        sink.stop_failing()
        fault_ended = timezone.now()
        injected = dict(sink.faults_injected)

        row = settle(
            fault=f"SMTP 421/451/452/550, drop, hang on {FRACTION:.0%}, then fixed",
            client=actor.client,
            sinks=[sink],
            fault_ended=fault_ended,
            notes=[
                "faults injected: "
                + ", ".join(f"{FAULTS[fault]} x{n}" for fault, n in injected.items())
            ],
        )

    assert row.lost == 0, row.notes
    assert set(injected) == set(FAULTS)  # each behaviour was met
    deliveries = Delivery.objects.filter(message__client=actor.client)
    bounced = deliveries.filter(status=DeliveryStatus.BOUNCED)
    assert bounced.exists()
    # Only a 550 is permanent: nothing else bounced anyone.
    assert set(bounced.values_list("last_code", flat=True)) == {550}
    attempts = Attempt.objects.filter(delivery__in=deliveries)
    # 452 deferred the second recipient; it was sent later (or met another fault).
    assert attempts.filter(smtp_code=452, outcome="deferred").exists()
    # A refusal at connection time is the relay's fault: not charged to the message.
    assert deliveries.filter(relay_failures__gt=0).exists()
    assert row.delivered + row.bounced + row.failed == MESSAGES * RECIPIENTS
