"""Sending events to endpoints, run in the test's own process against a real HTTP receiver on
loopback and the real Postgres: order and batching, signatures, backoff, the retry horizon,
automatic disabling, timeouts, the response excerpt and the send-time SSRF check.

These tests call the services directly inside the test's transaction, so no worker can see (or
race for) their rows; tests/integration/test_webhooks_stack.py runs the same path on workers.
"""

import json
import uuid
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from accounts.models import Client
from deliveries.models import Delivery, Event
from deliveries.services import MessageDraft, Recipient, deliveries_transition, messages_accept
from deliveries.states import DeliveryStatus
from tests.support.receiver import WebhookReceiver
from webhooks.models import Endpoint, Notification, WebhookAttempt
from webhooks.services import (
    DeliverReport,
    endpoint_create,
    endpoint_deliver,
    endpoints_dispatch,
    events_fan_out,
    webhooks_tick,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver():
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(autouse=True)
def loopback_allowed(settings):
    settings.MAILHUB_WEBHOOK_ALLOW_HTTP = True
    settings.MAILHUB_WEBHOOK_ALLOW_LOOPBACK = True
    settings.MAILHUB_WEBHOOK_TIMEOUT_SECONDS = 5


def endpoint_for(actor, receiver: WebhookReceiver, **options) -> Endpoint:
    endpoint, secret = endpoint_create(client=actor.client, url=receiver.url, **options)
    receiver.secret = secret
    return endpoint


def accept(actor, *recipients: str, tags=(), metadata=None) -> list[uuid.UUID]:
    """Messages of one recipient each, accepted (their `accepted` events written)."""
    drafts = [
        MessageDraft(
            sender="no-reply@shop.test",
            recipients=[Recipient(address=address)],
            subject="hello",
            text="hello",
            tags=tags,
            metadata=metadata or {},
        )
        for address in recipients
    ]
    return [message.id for message in messages_accept(client=actor.client, drafts=drafts)]


def deliver(endpoint: Endpoint) -> DeliverReport:
    """What the delivery task does once the tick has claimed the endpoint for it."""
    claim = uuid.uuid4()
    Endpoint.objects.filter(id=endpoint.id).update(
        claim=claim, claimed_until=timezone.now() + timedelta(minutes=1)
    )
    return endpoint_deliver(endpoint_id=endpoint.id, claim=claim, task_id="test-task")


def fan_out() -> None:
    events_fan_out(limit=1000)


def test_events_are_posted_signed_with_tags_and_metadata_and_marked_delivered(acme, receiver):
    endpoint = endpoint_for(acme, receiver)
    [message_id] = accept(acme, "ann@example.com", tags=["signup"], metadata={"user": 42})
    fan_out()

    report = deliver(endpoint)

    assert (report.requests, report.events_delivered, report.failed) == (1, 1, False)
    [request] = receiver.requests
    assert request.signature_valid and request.answered == 204
    assert request.path == "/hooks/mailhub"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("Mailhub-Webhooks/")
    [event] = json.loads(request.body)["events"]
    stored = Event.objects.get(message_id=message_id)
    assert event == {
        "id": str(stored.id),
        "type": "accepted",
        "created_at": event["created_at"],
        "message_id": str(message_id),
        "recipient": "ann@example.com",
        "attempt": 0,
        "smtp_code": None,
        "enhanced_code": "",
        "reply": "",
        "next_attempt_at": None,
        "test_mode": False,
        "tags": ["signup"],
        "metadata": {"user": 42},
    }
    notification = Notification.objects.get(endpoint=endpoint)
    assert notification.status == "delivered" and notification.attempts == 1
    [attempt] = WebhookAttempt.objects.filter(endpoint=endpoint)
    assert attempt.succeeded and attempt.status_code == 204
    assert attempt.event_ids == [stored.id] and attempt.task_id == "test-task"
    endpoint.refresh_from_db()
    assert endpoint.last_success_at is not None and endpoint.claim is None


def test_a_backlog_goes_out_in_order_in_batches_of_at_most_the_maximum(acme, receiver, settings):
    settings.MAILHUB_WEBHOOK_MAX_BATCH = 2
    endpoint = endpoint_for(acme, receiver)
    for address in ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]:
        accept(acme, address)
    cancel = Delivery.objects.get(address="a@example.com")
    deliveries_transition(delivery_ids=[cancel.id], to=DeliveryStatus.CANCELLED)
    fan_out()

    report = deliver(endpoint)

    assert report.requests == 3 and report.events_delivered == 5
    assert [len(r.events) for r in receiver.requests] == [2, 2, 1]
    assert [(e["type"], e["recipient"]) for e in receiver.events()] == [
        ("accepted", "a@example.com"),
        ("accepted", "b@example.com"),
        ("accepted", "c@example.com"),
        ("accepted", "d@example.com"),
        ("cancelled", "a@example.com"),
    ]
    assert not Notification.objects.filter(status="pending").exists()


def test_an_endpoint_gets_only_the_event_types_it_asked_for(acme, globex, receiver):
    endpoint = endpoint_for(acme, receiver, event_types=["cancelled"])
    accept(acme, "ann@example.com", "bob@example.com")
    accept(globex, "eve@example.com")
    bob = Delivery.objects.get(address="bob@example.com")
    deliveries_transition(delivery_ids=[bob.id], to=DeliveryStatus.CANCELLED)
    fan_out()

    deliver(endpoint)

    assert [(e["type"], e["recipient"]) for e in receiver.events()] == [
        ("cancelled", "bob@example.com")
    ]


def test_each_event_is_fanned_out_once_and_a_disabled_endpoint_is_skipped(acme, receiver):
    enabled = endpoint_for(acme, receiver)
    disabled = endpoint_for(acme, receiver, enabled=False)
    accept(acme, "ann@example.com", "bob@example.com")

    assert events_fan_out(limit=1000) == (2, 2)
    assert events_fan_out(limit=1000) == (0, 0)

    assert Notification.objects.filter(endpoint=enabled).count() == 2
    assert not Notification.objects.filter(endpoint=disabled).exists()
    assert not Event.objects.filter(fanned_out=False).exists()


def test_one_tick_catches_up_with_more_events_than_one_fan_out_batch(acme, settings):
    settings.MAILHUB_WEBHOOK_FANOUT_BATCH = 2
    endpoint_create(client=acme.client, url="http://127.0.0.1:9/", event_types=["bounced"])
    accept(acme, *[f"r{i}@example.com" for i in range(5)])

    report = webhooks_tick()

    assert report.events == 5
    assert not Event.objects.filter(fanned_out=False).exists()


def test_a_failed_request_backs_the_endpoint_off_and_its_events_go_out_later(acme, receiver):
    endpoint = endpoint_for(acme, receiver)
    accept(acme, "ann@example.com")
    fan_out()
    receiver.fail_next(1, status=503)

    first = deliver(endpoint)

    assert first.failed and first.events_delivered == 0
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 1 and endpoint.failing_since is not None
    assert endpoint.retry_at > timezone.now()
    assert endpoint.claim is None
    assert endpoint.last_error.startswith("HTTP 503")
    assert Notification.objects.get(endpoint=endpoint).status == "pending"
    assert endpoints_dispatch() == 0  # still backing off: not handed to a task

    Endpoint.objects.filter(id=endpoint.id).update(retry_at=timezone.now())  # time passes
    second = deliver(endpoint)

    assert second.events_delivered == 1 and not second.failed
    failed, accepted = receiver.requests
    assert failed.answered == 503 and accepted.answered == 204
    assert failed.events == accepted.events  # the same event, sent again
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 0 and endpoint.failing_since is None
    assert endpoint.retry_at is None
    assert [a.succeeded for a in WebhookAttempt.objects.order_by("id")] == [False, True]


def test_the_backoff_grows_with_each_failure(acme, receiver, settings):
    settings.MAILHUB_WEBHOOK_RETRY_JITTER = 0
    endpoint = endpoint_for(acme, receiver)
    accept(acme, "ann@example.com")
    fan_out()
    receiver.fail_next(3)

    waits = []
    for _ in range(3):
        before = timezone.now()
        deliver(endpoint)
        endpoint.refresh_from_db()
        waits.append((endpoint.retry_at - before).total_seconds())

    base = settings.MAILHUB_WEBHOOK_RETRY_BASE_SECONDS
    assert [round(w / base) for w in waits] == [1, 2, 4]
    assert endpoint.consecutive_failures == 3


def test_an_endpoint_failing_for_longer_than_the_limit_is_disabled_with_the_reason(
    acme, receiver, settings
):
    settings.MAILHUB_WEBHOOK_DISABLE_AFTER_SECONDS = 3600
    endpoint = endpoint_for(acme, receiver)
    accept(acme, "ann@example.com")
    fan_out()
    Endpoint.objects.filter(id=endpoint.id).update(
        consecutive_failures=11, failing_since=timezone.now() - timedelta(hours=2)
    )
    receiver.fail_next(1, status=500)

    deliver(endpoint)

    endpoint.refresh_from_db()
    assert endpoint.enabled is False and endpoint.disabled_at is not None
    assert "Disabled automatically" in endpoint.disabled_reason
    assert "all 12 requests" in endpoint.disabled_reason
    assert "HTTP 500" in endpoint.disabled_reason
    # Its client has no other endpoint: its events are written already fanned out again.
    assert Client.objects.get(id=acme.client.id).wants_events is False
    [later] = accept(acme, "bob@example.com")
    assert Event.objects.get(message_id=later).fanned_out is True
    fan_out()
    assert Notification.objects.filter(endpoint=endpoint).count() == 1  # nothing new for it
    assert endpoints_dispatch() == 0


def test_a_short_failure_does_not_disable_the_endpoint(acme, receiver, settings):
    settings.MAILHUB_WEBHOOK_DISABLE_AFTER_SECONDS = 3600
    endpoint = endpoint_for(acme, receiver)
    accept(acme, "ann@example.com")
    fan_out()
    receiver.fail_next(1)

    deliver(endpoint)

    endpoint.refresh_from_db()
    assert endpoint.enabled is True and endpoint.disabled_reason == ""


def test_events_not_delivered_within_the_retry_horizon_are_given_up(acme, receiver, settings):
    settings.MAILHUB_WEBHOOK_RETRY_HORIZON_SECONDS = 3600
    endpoint = endpoint_for(acme, receiver)
    accept(acme, "old@example.com")
    fan_out()
    Notification.objects.update(created_at=timezone.now() - timedelta(hours=2))
    accept(acme, "new@example.com")
    fan_out()

    deliver(endpoint)

    assert [e["recipient"] for e in receiver.events()] == ["new@example.com"]
    statuses = dict(Notification.objects.values_list("event__recipient", "status"))
    assert statuses == {"old@example.com": "abandoned", "new@example.com": "delivered"}


def test_a_slow_endpoint_is_cut_off_at_the_timeout(acme, receiver, settings):
    settings.MAILHUB_WEBHOOK_TIMEOUT_SECONDS = 0.5
    receiver.delay_seconds = 5
    endpoint = endpoint_for(acme, receiver)
    accept(acme, "ann@example.com")
    fan_out()

    report = deliver(endpoint)

    assert report.failed
    [attempt] = WebhookAttempt.objects.all()
    assert attempt.status_code is None and attempt.error == "timed out after 0.5 s"
    assert attempt.duration_ms < 5000  # did not wait for the receiver's answer
    assert Notification.objects.get().status == "pending"


def test_a_redirect_is_a_failure(acme, receiver):
    endpoint = endpoint_for(acme, receiver)
    accept(acme, "ann@example.com")
    fan_out()
    receiver.fail_next(1, status=302)

    assert deliver(endpoint).failed

    [attempt] = WebhookAttempt.objects.all()
    assert attempt.status_code == 302 and not attempt.succeeded
    assert len(receiver.requests) == 1


def test_only_a_short_excerpt_of_the_response_is_kept(acme, receiver):
    endpoint = endpoint_for(acme, receiver)
    accept(acme, "ann@example.com")
    fan_out()
    receiver.fail_next(1, status=500)
    receiver.response_body = b"<html>" + b"x" * 100_000 + b"</html>"

    deliver(endpoint)

    [attempt] = WebhookAttempt.objects.all()
    assert attempt.response_excerpt.startswith("<html>xxx")
    assert len(attempt.response_excerpt) == 200
    endpoint.refresh_from_db()
    assert len(endpoint.last_error) <= 300


def test_a_url_that_now_resolves_to_loopback_is_refused_at_send_time(acme, receiver, settings):
    endpoint = endpoint_for(acme, receiver)  # saved while loopback was allowed
    accept(acme, "ann@example.com")
    fan_out()
    settings.MAILHUB_WEBHOOK_ALLOW_LOOPBACK = False

    report = deliver(endpoint)

    assert report.failed
    assert receiver.requests == []
    [attempt] = WebhookAttempt.objects.all()
    assert attempt.error.startswith("refused:") and "loopback" in attempt.error
    assert attempt.status_code is None
    assert Notification.objects.get().status == "pending"


def test_a_task_whose_claim_was_taken_over_sends_nothing(acme, receiver):
    endpoint = endpoint_for(acme, receiver)
    accept(acme, "ann@example.com")
    fan_out()
    Endpoint.objects.filter(id=endpoint.id).update(
        claim=uuid.uuid4(), claimed_until=timezone.now() + timedelta(minutes=1)
    )

    report = endpoint_deliver(endpoint_id=endpoint.id, claim=uuid.uuid4())

    assert report.requests == 0 and receiver.requests == []
    assert Notification.objects.get().status == "pending"


@pytest.fixture
def webhook_queue_deleted_after():
    """The test publishes a task no worker will run: leave no queue behind on the broker unless
    a worker is consuming it (then the session's teardown deletes it)."""
    yield
    from mailhub.celery import app

    name = django_settings.MAILHUB_WEBHOOK_QUEUE
    [queue] = [q for q in django_settings.CELERY_TASK_QUEUES if q.name == name]
    with app.connection_for_write() as connection:
        queue.bind(connection.default_channel).delete(if_unused=True)


def test_the_tick_claims_an_endpoint_with_pending_events_once(
    acme, receiver, webhook_queue_deleted_after
):
    endpoint = endpoint_for(acme, receiver)
    idle = endpoint_for(acme, receiver, event_types=["bounced"])
    accept(acme, "ann@example.com")
    fan_out()

    assert endpoints_dispatch() == 1
    assert endpoints_dispatch() == 0  # claimed: not published twice

    endpoint.refresh_from_db()
    idle.refresh_from_db()
    assert endpoint.claim is not None and endpoint.claimed_until > timezone.now()
    assert idle.claim is None
