"""A real worker (with beat) logging as JSON: one object per line, the line about a message's
outcome names its task, message and client, and the idle ticks write nothing at INFO."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings

from deliveries.models import Attempt
from tests.builders import message_payload
from tests.integration.conftest import one_worker, wait_until, wait_until_final
from tests.support.sink import SmtpSink
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.integration

# What a record looks like in the text format: `2026-01-31 12:00:00,123 INFO logger ...`.
TEXT_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", re.MULTILINE)


@pytest.fixture(scope="module")
def json_worker(django_db_setup, django_db_blocker) -> Iterator[tuple[SmtpSink, WorkerProcess]]:
    queues = [
        *settings.MAILHUB_QUEUES.values(),
        settings.MAILHUB_DISPATCH_QUEUE,
        settings.MAILHUB_WEBHOOK_QUEUE,
        settings.MAILHUB_WEBHOOK_TICK_QUEUE,
    ]
    with one_worker(
        "json-logs", queues, MAILHUB_LOG_FORMAT="json", MAILHUB_WEBHOOK_INTERVAL_SECONDS="0.5"
    ) as stack:
        yield stack


def records(worker: WorkerProcess) -> list[dict]:
    """The worker's log records: its lines but Celery's start-up banner (printed, not logged)."""
    lines = worker.log_path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_the_line_about_a_message_names_its_task_message_and_client(
    json_worker, transactional_db, acme
):
    sink, worker = json_worker
    sink.reset()
    response = acme.api.post("/api/v1/messages", message_payload(), format="json")
    assert response.status_code == 202, response.content
    message_id = response.json()["id"]
    wait_until_final(uuid.UUID(message_id))
    [attempt] = Attempt.objects.filter(delivery__message_id=message_id)

    def about_message() -> list[dict]:
        return [r for r in records(worker) if r.get("message_id") == message_id]

    wait_until(
        lambda: any(r["message"].startswith("outcome:") for r in about_message()),
        what="the worker's line about the message's outcome",
    )
    [outcome] = [r for r in about_message() if r["message"].startswith("outcome:")]
    assert outcome["logger"] == "deliveries.services.sending" and outcome["level"] == "INFO"
    assert outcome["message"] == "outcome: 1 delivered"
    # The transport's line too ("smtp connected to ..."), though it is handed no message.
    assert {r["logger"] for r in about_message()} >= {"deliveries.smtp"}
    for line in about_message():
        assert line["task_id"] == attempt.task_id
        assert line["client"] == acme.client.id
    # Celery's own lines about that task carry its id as a field too.
    about_task = [r for r in records(worker) if r.get("task_id") == attempt.task_id]
    assert any("received" in r["message"] for r in about_task)
    assert any("succeeded" in r["message"] for r in about_task)


def test_every_log_line_is_json_and_the_idle_ticks_say_nothing_at_info(json_worker):
    _, worker = json_worker
    time.sleep(1)  # whatever an earlier test left for the ticks is done with
    seen = len(records(worker))
    time.sleep(3)  # beat queues a dispatcher tick and a webhook tick every half second

    text = worker.log_path.read_text()
    assert not TEXT_RECORD.search(text), "a log record in the text format"
    idle = records(worker)[seen:]
    assert [r for r in idle if r["level"] != "DEBUG"] == []
