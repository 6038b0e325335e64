"""The whole path of a message on the real stack: API -> Postgres -> RabbitMQ -> Celery worker
process -> SMTP server, and back into Postgres."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from deliveries.models import Attempt, Delivery, Message
from deliveries.services import MessageDraft, Recipient, messages_accept
from deliveries.states import DeliveryStatus, MessageStatus
from tests.builders import message_payload
from tests.integration.conftest import wait_until, wait_until_final
from tests.support.sink import DROP

pytestmark = pytest.mark.integration


def post(actor, **overrides) -> uuid.UUID:
    response = actor.api.post("/api/v1/messages", message_payload(**overrides), format="json")
    assert response.status_code == 202, response.content
    return uuid.UUID(response.json()["id"])


def attempts_of(message_id, address) -> list[Attempt]:
    return list(
        Attempt.objects.filter(delivery__message_id=message_id, delivery__address=address).order_by(
            "number"
        )
    )


def test_a_posted_message_arrives_with_its_headers_and_body(sink, acme):
    message_id = post(
        acme,
        **{
            "from": "Shop Team <no-reply@shop.test>",
            "to": ["Ann Example <ann@example.com>"],
            "cc": ["carl@example.com"],
            "bcc": ["audit@shop.test"],
            "reply_to": ["help@shop.test"],
            "subject": "Votre code: 123456 ✓",
            "text": "Code: 123456",
            "html": "<p>Code: <b>123456</b></p>",
            "headers": {"X-Campaign": "signup"},
            "priority": "high",
        },
    )
    [received] = sink.wait_for(1)
    message = wait_until_final(message_id)

    assert received.mail_from == "no-reply@shop.test"
    assert sorted(received.rcpt_tos) == ["ann@example.com", "audit@shop.test", "carl@example.com"]
    mime = received.parsed
    assert mime["From"] == "Shop Team <no-reply@shop.test>"
    assert mime["To"] == "Ann Example <ann@example.com>"
    assert mime["Cc"] == "carl@example.com"
    assert mime["Reply-To"] == "help@shop.test"
    assert mime["Bcc"] is None and b"audit@shop.test" not in received.content
    assert mime["Subject"] == "Votre code: 123456 ✓"
    assert mime["X-Campaign"] == "signup"
    assert mime["Message-ID"] == message.message_id
    assert mime.get_body(("plain",)).get_content().strip() == "Code: 123456"
    assert mime.get_body(("html",)).get_content().strip() == "<p>Code: <b>123456</b></p>"

    assert message.status == MessageStatus.DELIVERED
    for delivery in Delivery.objects.filter(message_id=message_id):
        assert delivery.status == DeliveryStatus.DELIVERED
        assert delivery.attempts == 1 and delivery.last_code == 250
        assert delivery.delivered_at is not None and delivery.next_attempt_at is None
        [attempt] = delivery.attempt_set.all()
        assert attempt.outcome == Attempt.Outcome.DELIVERED and attempt.smtp_code == 250
        assert attempt.worker and attempt.task_id and attempt.duration_ms is not None


def test_a_451_reply_once_then_acceptance_gives_two_attempts_and_delivered(sink, acme):
    sink.script_rcpt("ann@example.com", "451 4.7.1 greylisted, try again later")
    message_id = post(acme, to=["ann@example.com"])

    message = wait_until_final(message_id)

    assert message.status == MessageStatus.DELIVERED
    first, second = attempts_of(message_id, "ann@example.com")
    assert (first.smtp_code, first.enhanced_code, first.outcome) == (451, "4.7.1", "deferred")
    assert (second.smtp_code, second.outcome) == (250, "delivered")
    assert second.started_at - first.started_at >= timedelta(seconds=0.4)  # 0.5 s minus jitter
    assert len(sink.wait_for(1)) == 1


def test_a_550_reply_bounces_after_one_attempt_without_retry(sink, acme):
    sink.script_rcpt("nobody@example.com", "550 5.1.1 no such user")
    message_id = post(acme, to=["nobody@example.com"])

    message = wait_until_final(message_id)
    time.sleep(1.5)  # three dispatcher ticks: a bounce must not be retried

    delivery = Delivery.objects.get(message_id=message_id)
    assert message.status == MessageStatus.BOUNCED
    assert delivery.status == DeliveryStatus.BOUNCED
    assert (delivery.attempts, delivery.last_code, delivery.last_enhanced_code) == (1, 550, "5.1.1")
    assert [a.outcome for a in attempts_of(message_id, "nobody@example.com")] == ["bounced"]
    assert sink.received == []


def test_one_refused_recipient_of_three_does_not_fail_the_others(sink, acme):
    sink.script_rcpt("bad@example.com", "550 5.1.1 no such user")
    message_id = post(acme, to=["ann@example.com", "bad@example.com", "bob@example.com"])

    message = wait_until_final(message_id)

    statuses = dict(Delivery.objects.filter(message_id=message_id).values_list("address", "status"))
    assert statuses == {
        "ann@example.com": "delivered",
        "bad@example.com": "bounced",
        "bob@example.com": "delivered",
    }
    assert message.status == MessageStatus.PARTIALLY_DELIVERED
    [received] = sink.wait_for(1)
    assert sorted(received.rcpt_tos) == ["ann@example.com", "bob@example.com"]
    assert "bad@example.com" in received.parsed["To"]  # the header still names everyone


def test_a_connection_dropped_mid_data_is_retried_and_delivered(sink, acme):
    sink.script_data(DROP)
    message_id = post(acme, to=["ann@example.com"])

    message = wait_until_final(message_id)

    assert message.status == MessageStatus.DELIVERED
    first, second = attempts_of(message_id, "ann@example.com")
    assert first.outcome == "deferred" and first.smtp_code is None
    assert "connection" in first.reply
    assert second.outcome == "delivered"
    assert len(sink.wait_for(1)) == 1


def test_the_workers_reuse_their_smtp_connections_across_messages(sink, acme):
    for _ in range(10):
        wait_until_final(post(acme))

    assert len(sink.wait_for(10)) == 10
    # Three worker processes exist (1 high + 2 general); connections opened before this test
    # count zero here. Ten new connections would mean one per message.
    assert sink.connections <= 3


def test_a_high_message_overtakes_a_backlog_of_low_ones(sink, acme):
    sink.delay_seconds = 0.05  # a slow relay, so that the backlog lasts
    backlog = messages_accept(
        client=acme.client,
        drafts=[
            MessageDraft(
                sender="news@shop.test",
                recipients=[Recipient(address=f"low{i}@example.com")],
                subject="newsletter",
                text="hello",
                priority="low",
            )
            for i in range(300)
        ],
    )
    delivered_before = len(sink.received)
    urgent = post(acme, to=["urgent@example.com"], priority="high")

    received = sink.wait_for(301, timeout=120)
    position = [message.rcpt_tos[0] for message in received].index("urgent@example.com")
    waiting_when_posted = len(backlog) - delivered_before
    overtaken = len(backlog) - position
    assert waiting_when_posted >= 100, "the backlog drained before the test could use it"
    # The low messages in the general workers' hands go on arriving while the high one travels;
    # the rest of the backlog must not.
    assert position - delivered_before <= 30, (
        f"{waiting_when_posted} low messages were waiting; the high one came {position}th, "
        f"overtaking {overtaken}"
    )
    wait_until_final(urgent)


def test_a_queued_delivery_whose_publish_was_lost_is_published_by_the_dispatcher(sink, acme):
    now = timezone.now()
    message = Message.objects.create(
        client=acme.client,
        sender="no-reply@shop.test",
        subject="published never",
        text_body="hello",
        message_id="<lost-publish@shop.test>",
        created_at=now,
        expires_at=now + timedelta(hours=1),
    )
    Delivery.objects.create(
        message=message,
        address="ann@example.com",
        status=DeliveryStatus.QUEUED,
        next_attempt_at=now - timedelta(seconds=1),  # overdue: no task was ever published
        updated_at=now,
    )

    assert wait_until_final(message.id).status == MessageStatus.DELIVERED
    assert sink.wait_for(1)[0].parsed["Message-ID"] == "<lost-publish@shop.test>"


def test_a_delivery_whose_worker_died_is_taken_back_after_its_lease(sink, acme):
    now = timezone.now()
    message = Message.objects.create(
        client=acme.client,
        sender="no-reply@shop.test",
        subject="worker died",
        text_body="hello",
        message_id="<worker-died@shop.test>",
        created_at=now,
        expires_at=now + timedelta(hours=1),
    )
    with transaction.atomic():  # the dispatcher must not see the delivery without its attempt
        delivery = Delivery.objects.create(
            message=message,
            address="ann@example.com",
            status=DeliveryStatus.SENDING,
            attempts=1,
            next_attempt_at=now - timedelta(seconds=1),  # the lease has run out
            updated_at=now,
        )
        Attempt.objects.create(delivery=delivery, number=1, worker="dead@host", started_at=now)

    assert wait_until_final(message.id).status == MessageStatus.DELIVERED
    first, second = attempts_of(message.id, "ann@example.com")
    assert first.outcome == Attempt.Outcome.LOST and "lease" in first.reply
    assert second.outcome == Attempt.Outcome.DELIVERED
    wait_until(lambda: len(sink.received) == 1, what="one delivery at the sink")
