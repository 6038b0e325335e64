"""Webhooks on the real stack: mail sent through the API, delivered by the Celery workers to the
SMTP sink, its events fanned out by the beat tick and POSTed by a webhook worker process (on the
`webhooks` queue) to a real HTTP receiver on loopback that checks every signature."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from django.conf import settings

from deliveries.models import Event
from tests.builders import message_payload
from tests.integration.conftest import WORKER_ENV, wait_until_final, worker_log_dir
from tests.support.receiver import WebhookReceiver, documented_verifier
from tests.support.workers import WorkerProcess, database_url
from webhooks.models import Endpoint, Notification, WebhookAttempt
from webhooks.signing import signature_header

pytestmark = pytest.mark.integration

# The worker may call the receiver on loopback over http; a failing endpoint is retried within
# a test (0.2 s, 0.4 s, 0.8 s, then every second at most).
WEBHOOK_WORKER_ENV = {
    "MAILHUB_WEBHOOK_ALLOW_HTTP": "1",
    "MAILHUB_WEBHOOK_ALLOW_LOOPBACK": "1",
    "MAILHUB_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    "MAILHUB_WEBHOOK_RETRY_CAP_SECONDS": "1",
    "MAILHUB_WEBHOOK_TIMEOUT_SECONDS": "5",
}


def start_webhook_pool(name: str, *, concurrency: int = 2, **overrides: str) -> WorkerProcess:
    """A worker on the webhook queues (`webhooks`, `webhooks.tick`), as the Procfile's
    `worker_webhooks`; started."""
    env = {
        **os.environ,
        **WORKER_ENV,
        **WEBHOOK_WORKER_ENV,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }
    return WorkerProcess(
        name,
        [settings.MAILHUB_WEBHOOK_QUEUE, settings.MAILHUB_WEBHOOK_TICK_QUEUE],
        env=env,
        log_dir=worker_log_dir(),
        concurrency=concurrency,
    ).start()


@pytest.fixture(scope="module")
def webhooks_worker(mail_stack):
    """A worker consuming the webhook queues, as production runs one. The beat that sends the
    webhook ticks is the one `mail_stack` already runs (with the mail dispatcher's)."""
    worker = start_webhook_pool("webhooks")
    yield worker
    worker.stop()


def loopback_receivers(settings, count: int) -> Iterator[list[WebhookReceiver]]:
    """``count`` receivers on loopback, where the API (``settings``: pytest-django's) then lets
    endpoints point; stopped afterwards."""
    settings.MAILHUB_WEBHOOK_ALLOW_HTTP = True
    settings.MAILHUB_WEBHOOK_ALLOW_LOOPBACK = True
    started = [WebhookReceiver().start() for _ in range(count)]
    try:
        yield started
    finally:
        for receiver in started:
            receiver.stop()


@pytest.fixture
def receiver(sink, webhooks_worker, settings):
    for [receiver] in loopback_receivers(settings, 1):
        yield receiver


def subscribe(actor, receiver: WebhookReceiver, **options) -> str:
    response = actor.api.post("/api/v1/webhooks", {"url": receiver.url, **options}, format="json")
    assert response.status_code == 201, response.content
    receiver.secret = response.json()["secret"]
    return response.json()["id"]


def send(actor, **overrides) -> uuid.UUID:
    response = actor.api.post("/api/v1/messages", message_payload(**overrides), format="json")
    assert response.status_code == 202, response.content
    return uuid.UUID(response.json()["id"])


def event_ids_of(message_id) -> set[str]:
    return {
        str(i) for i in Event.objects.filter(message_id=message_id).values_list("id", flat=True)
    }


def test_a_451_then_accepted_recipient_is_reported_accepted_deferred_delivered_in_order(
    sink, receiver, acme
):
    subscribe(acme, receiver)
    sink.script_rcpt("ann@example.com", "451 4.7.1 greylisted, try again later")

    message_id = send(acme, to=["ann@example.com"])

    wait_until_final(message_id)
    receiver.wait_until(
        lambda r: any(e["type"] == "delivered" for e in r.events()), what="the delivered event"
    )
    events = [e for e in receiver.events() if e["recipient"] == "ann@example.com"]
    assert [e["type"] for e in events] == ["accepted", "deferred", "delivered"]
    accepted, deferred, delivered = events
    assert {e["message_id"] for e in events} == {str(message_id)}
    assert (accepted["attempt"], accepted["smtp_code"]) == (0, None)
    assert (deferred["attempt"], deferred["smtp_code"], deferred["enhanced_code"]) == (
        1,
        451,
        "4.7.1",
    )
    assert "greylisted" in deferred["reply"] and deferred["next_attempt_at"] is not None
    assert (delivered["attempt"], delivered["smtp_code"]) == (2, 250)
    assert all(request.signature_valid for request in receiver.requests)


def test_a_receiver_failing_three_times_then_accepting_gets_every_event_exactly_once(
    sink, receiver, acme
):
    endpoint_id = subscribe(acme, receiver)
    receiver.fail_next(3, status=500)

    message_id = send(acme, to=["ann@example.com", "bob@example.com", "carl@example.com"])

    wait_until_final(message_id)
    expected = event_ids_of(message_id)
    assert len(expected) == 6  # accepted and delivered, for each of three recipients
    receiver.wait_until(
        lambda r: {e["id"] for e in r.events()} >= expected, timeout=60, what="every event"
    )
    time.sleep(2)  # two more ticks: whatever would be sent again has been by now
    received = Counter(e["id"] for e in receiver.events())
    assert set(received) == expected
    assert set(received.values()) == {1}, received
    assert [r.answered for r in receiver.requests[:3]] == [500, 500, 500]
    assert all(r.accepted for r in receiver.requests[3:])
    attempts = list(WebhookAttempt.objects.filter(endpoint_id=endpoint_id).order_by("id"))
    assert [a.succeeded for a in attempts[:3]] == [False, False, False]
    assert all(a.status_code == 500 for a in attempts[:3])
    assert all(a.succeeded for a in attempts[3:])
    assert not Notification.objects.filter(endpoint_id=endpoint_id).exclude(status="delivered")
    endpoint = Endpoint.objects.get(id=endpoint_id)
    assert endpoint.consecutive_failures == 0 and endpoint.enabled


def test_a_forged_or_altered_request_fails_the_documented_verification(sink, receiver, acme):
    subscribe(acme, receiver)
    send(acme, to=["ann@example.com"])
    receiver.wait_until(lambda r: r.requests, what="a first request")
    genuine = receiver.requests[0]
    header = genuine.headers["Mailhub-Signature"]
    verify = documented_verifier()

    assert verify(receiver.secret, genuine.body, header) is True
    altered = genuine.body.replace(b"ann@example.com", b"eve@example.com")
    assert altered != genuine.body
    assert verify(receiver.secret, altered, header) is False
    timestamp = int(header.split(",")[0].removeprefix("t="))
    forged = signature_header(secret="whsec_guessed", timestamp=timestamp, body=altered)
    assert verify(receiver.secret, altered, forged) is False
    assert verify(receiver.secret, genuine.body, header.replace("v1=", "v1=0")) is False
