"""RabbitMQ stopped and started again while mail is in flight and clients keep posting."""

from __future__ import annotations

import time

import pytest

from deliveries.models import Message
from deliveries.states import MessageStatus
from tests.chaos.stack import outage_run, rabbitmq_stopped, refused_requests_left_no_trace

# The wait for other test runs to finish (machine_to_ourselves) may take up to 20 minutes.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

OUTAGE_SECONDS = 10


def stop_rabbitmq_for_a_while() -> None:
    with rabbitmq_stopped():
        time.sleep(OUTAGE_SECONDS)


def test_a_broker_outage_delays_mail_but_every_accepted_message_is_delivered(
    actor, machine_to_ourselves
):
    """While RabbitMQ is down the API still answers 202: the rows are in Postgres, `queued`,
    and the publish that failed is redone by the dispatcher once the broker is back (after
    MAILHUB_REPUBLISH_AFTER_SECONDS). Tasks that workers held unacknowledged come back too."""
    row, feeder = outage_run(
        actor=actor,
        name="broker",
        fault=f"RabbitMQ stopped for {OUTAGE_SECONDS} s (stop_app/start_app) under load",
        inject=stop_rabbitmq_for_a_while,
        env={"MAILHUB_REPUBLISH_AFTER_SECONDS": "2"},
        preload=1500,
        rate=25,
    )

    assert row.lost == 0, row.notes
    accepted = feeder.accepted_ids()
    assert accepted  # the API kept accepting mail
    assert Message.objects.filter(id__in=accepted, status=MessageStatus.DELIVERED).count() == len(
        accepted
    )
    assert refused_requests_left_no_trace(feeder) == []
    assert row.duplicates <= row.unrecorded_attempts  # a redelivered task sends nothing twice
    assert row.delivered == row.recipients
