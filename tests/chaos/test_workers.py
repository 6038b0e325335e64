"""kill -9 of worker processes while they hold claimed batches, three times."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.utils import timezone

from deliveries.models import Attempt
from tests.chaos.stack import chaos_stack, settle, sinks
from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MESSAGES = 1500
KILLS = 3
CONCURRENCY = 2


def test_workers_killed_mid_batch_three_times_lose_no_mail(actor):
    """Two workers share the load; three times, one of them (the one running beat, the second
    time) is SIGKILLed with its pool while it holds claimed deliveries, and a fresh one takes
    its place. The dead worker's leases expire, the dispatcher takes the deliveries back, and
    they go out again: possibly twice, never zero times."""
    with (
        sinks() as [sink],
        chaos_stack("kill", MAILHUB_SMTP_URL=sink.url, MAILHUB_LEASE_SECONDS="5") as stack,
    ):
        # A relay that takes 10 ms per message: a batch of 20 is in a worker's hands for 0.2 s
        # or more, so the test finds each victim holding one, and the mail outlasts three kills
        # however fast the rest of the pipeline is (without it, the last kill found no work).
        sink.delay_seconds = 0.01
        workers = [
            stack.start_worker(concurrency=CONCURRENCY, name="a0"),
            stack.start_worker(concurrency=CONCURRENCY, beat=True, name="b0"),
        ]
        stack.accept(actor.client, MESSAGES, tag="kill")
        for kill in range(KILLS):
            sink.wait_for((kill + 1) * MESSAGES // (KILLS + 2), timeout=180)
            target = kill % 2  # a, then b (with beat), then a again
            victim = workers[target]
            wait_until(
                lambda name=victim.name: Attempt.objects.filter(
                    outcome=Attempt.Outcome.PENDING, worker__startswith=f"{name}@"
                ).exists(),
                timeout=60,
                what=f"{victim.name} to hold a claimed batch",
            )
            victim.kill()
            workers[target] = stack.start_worker(
                concurrency=CONCURRENCY, beat=target == 1, name=f"{'ab'[target]}{kill + 1}"
            )
        fault_ended = timezone.now()

        row = settle(
            fault=f"kill -9 of a worker (pool of {CONCURRENCY}) mid-batch, {KILLS} times",
            client=actor.client,
            sinks=[sink],
            fault_ended=fault_ended,
        )

    assert row.lost == 0, row.notes
    assert row.delivered == MESSAGES
    assert row.unrecorded_attempts >= 1  # the kills did strike mid-batch
    # A copy can only come from an attempt whose worker died (or overran its lease), and at
    # most a batch per killed pool process.
    assert row.duplicates <= row.unrecorded_attempts
    assert row.message_id_changes == 0  # a copy keeps its message's Message-ID
    assert row.duplicates <= KILLS * CONCURRENCY * settings.MAILHUB_TASK_BATCH_SIZE
