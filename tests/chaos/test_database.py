"""PostgreSQL restarted while mail is in flight and clients keep posting."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from deliveries.models import Message
from deliveries.states import MessageStatus
from tests.builders import message_payload
from tests.chaos.stack import (
    chaos_stack,
    outage_run,
    postgres_restart,
    refused_requests_left_no_trace,
)
from tests.support.sink import free_port

# The wait for other test runs to finish (machine_to_ourselves) may take up to 20 minutes.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


def test_a_database_restart_is_answered_with_503s_and_loses_no_accepted_message(
    actor, machine_to_ourselves
):
    """Every connection is cut and none can be made for a moment. The API answers 503 with a
    problem body (never a 500) and nothing it answered 202 is lost. Workers whose tasks failed
    recover by themselves: rows left `queued` are published again by the dispatcher, rows left
    `sending` come back when their lease ends (so they may be sent twice)."""
    row, feeder = outage_run(
        actor=actor,
        name="postgres",
        fault="PostgreSQL restarted (pg_ctlcluster restart) under load",
        inject=postgres_restart,
        env={"MAILHUB_REPUBLISH_AFTER_SECONDS": "2", "MAILHUB_LEASE_SECONDS": "10"},
        preload=1500,
        rate=25,
    )

    assert row.lost == 0, row.notes
    accepted = feeder.accepted_ids()
    assert accepted
    assert Message.objects.filter(id__in=accepted, status=MessageStatus.DELIVERED).count() == len(
        accepted
    )
    # Mail sent while its outcome could not be written goes out again after its lease: at
    # most one batch per worker pool process (two workers of two here).
    assert row.duplicates <= row.unrecorded_attempts
    assert row.message_id_changes == 0  # a copy keeps its message's Message-ID
    assert row.duplicates <= 2 * 2 * settings.MAILHUB_TASK_BATCH_SIZE
    statuses = {answer.status for answer in feeder.refused()}
    assert statuses <= {503}, statuses  # never a 500, and always an answer
    assert refused_requests_left_no_trace(feeder) == []
    assert row.delivered == row.recipients


def test_an_api_without_its_database_answers_503_problems_with_retry_after(transactional_db):
    nowhere = f"postgres://mailhub:mailhub@127.0.0.1:{free_port()}/mailhub"
    with chaos_stack("nodb", DATABASE_URL=nowhere) as stack:
        connection = stack.start_api().connect()
        connection.request(
            "POST",
            "/api/v1/messages",
            body=json.dumps(message_payload()).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer mh_any"},
        )
        response = connection.getresponse()
        body = json.loads(response.read())

    assert response.status == 503
    assert response.getheader("Content-Type") == "application/problem+json"
    assert response.getheader("Retry-After") == "5"
    assert body["code"] == "database_unavailable" and body["status"] == 503
