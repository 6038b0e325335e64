"""The primary relay dying mid-run while a second relay is alive."""

from __future__ import annotations

import pytest
from django.utils import timezone

from deliveries.models import Attempt, Delivery
from tests.chaos.stack import chaos_stack, settle, sinks

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MESSAGES = 1500


def test_mail_keeps_flowing_through_the_second_relay_when_the_primary_dies(actor):
    """Three quarters of the mail goes to the primary until it dies mid-run (its server stops:
    connections in progress are cut, new ones refused); the circuit breaker of every worker
    process takes it out of rotation and the secondary carries everything that is left."""
    with sinks(2) as [primary, secondary]:
        relays = f"{primary.url}?weight=3,{secondary.url}?weight=1"
        env = {"MAILHUB_SMTP_URLS": relays, "MAILHUB_RELAY_COOLDOWN_SECONDS": "10"}
        with chaos_stack("relay", **env) as stack:
            stack.start_worker(name="a")
            stack.start_worker(beat=True, name="b")
            stack.accept(actor.client, MESSAGES, tag="relay")
            primary.wait_for(MESSAGES // 4, timeout=180)
            primary.stop()
            died = timezone.now()
            by_secondary_before = len(secondary.received)

            row = settle(
                fault="primary relay (weight 3 of 4) dies mid-run, secondary alive",
                client=actor.client,
                sinks=[primary, secondary],
                fault_ended=died,
            )

    assert row.lost == 0, row.notes
    assert row.delivered == MESSAGES
    # The secondary carried everything left once the primary was gone.
    assert len(secondary.received) > by_secondary_before
    assert len(primary.received) + len(secondary.received) >= MESSAGES
    delivered = Attempt.objects.filter(delivery__message__client=actor.client, outcome="delivered")
    via_primary = delivered.filter(relay=f"smtp://127.0.0.1:{primary.port}").count()
    assert via_primary <= len(primary.received)  # never recorded as sent by the dead relay
    # Failing over within an attempt costs nothing; only the transactions the death cut off
    # mid-way (timed out or dropped after MAIL) were charged and retried.
    retried = Delivery.objects.filter(message__client=actor.client, attempts__gt=1).count()
    row.notes.append(f"{retried} deliveries needed a second attempt (cut off mid-transaction)")
    assert retried <= 2 * 2 * 20  # at most a batch per worker process in flight at the death
