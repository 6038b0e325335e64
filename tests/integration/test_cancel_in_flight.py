"""Cancelling a message while it is being sent: the attempt goes on; if it delivers, bounces or
fails the recipient that stands, and if it would be retried (deferred, or lost with its worker)
the delivery is cancelled instead. The cancel's answer says which recipients were cancelled at
once and which only asked to be."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from deliveries.dispatcher import deliveries_dispatch
from deliveries.models import Attempt, Delivery, Event, Message
from deliveries.policy import SmtpReply, Stage
from deliveries.services import (
    Cancellation,
    Recipient,
    attempts_record,
    deliveries_claim,
    deliveries_retry_now,
    deliveries_send,
    message_cancel,
)
from deliveries.smtp import Envelope
from deliveries.states import DeliveryStatus, MessageStatus
from tests.builders import message_payload
from tests.integration.conftest import wait_until, wait_until_final
from tests.integration.test_sending import RecordingTransport, accept
from tests.support.sink import HANG

pytestmark = pytest.mark.integration
S = DeliveryStatus
URL = "/api/v1/messages"


class CancellingTransport(RecordingTransport):
    """The client cancels while the SMTP transaction runs; then the server answers ``reply``."""

    def __init__(self, message: Message, reply: SmtpReply) -> None:
        super().__init__()
        self.message = message
        self.reply = reply
        self.cancellation: Cancellation | None = None

    def send(self, envelope: Envelope, *, deadline: float) -> dict[str, SmtpReply]:
        self.sent.append(envelope)
        self.cancellation = message_cancel(message=self.message)
        return dict.fromkeys(envelope.recipients, self.reply)


def event_types(delivery: Delivery) -> list[str]:
    return list(delivery.events.order_by("created_at").values_list("type", flat=True))


@pytest.mark.parametrize(
    ("reply", "final"),
    [
        (SmtpReply(250, "2.0.0 OK", Stage.DATA), S.DELIVERED),
        (SmtpReply(550, "5.1.1 no such user", Stage.RCPT), S.BOUNCED),
        (SmtpReply(451, "4.7.1 greylisted", Stage.RCPT), S.CANCELLED),
        (SmtpReply(None, "timed out waiting for the server", Stage.DATA), S.CANCELLED),
        (SmtpReply(None, "cannot connect to the relay", Stage.CONNECT), S.CANCELLED),
    ],
    ids=["delivered", "bounced", "deferred", "timed out", "relay down"],
)
def test_a_cancel_during_the_attempt_wins_unless_the_attempt_decided(acme, reply, final):
    message = accept(acme.client, Recipient("ann@example.com"))
    transport = CancellingTransport(message, reply)

    deliveries_send(message_ids=[message.id], task_id="t", worker="w", transport=transport)

    assert transport.cancellation == Cancellation(cancelled=[], requested=["ann@example.com"])
    delivery = message.deliveries.get()
    assert delivery.status == final and delivery.attempts == 1
    assert Message.objects.get(id=message.id).status == final
    if final == S.CANCELLED:
        assert delivery.next_attempt_at is None
        assert delivery.last_reply.startswith("cancelled at the client's request, made while")
        assert event_types(delivery) == ["accepted", "deferred", "cancelled"]
        assert delivery.attempt_set.get().outcome == Attempt.Outcome.DEFERRED


def test_a_cancel_does_not_overrule_an_attempt_that_fails_the_delivery(acme, settings):
    settings.MAILHUB_MAX_ATTEMPTS = 1
    message = accept(acme.client, Recipient("ann@example.com"))
    transport = CancellingTransport(message, SmtpReply(451, "4.7.1 later", Stage.RCPT))

    deliveries_send(message_ids=[message.id], task_id="t", worker="w", transport=transport)

    assert message.deliveries.get().status == S.FAILED


def test_a_delivery_whose_worker_died_after_a_cancel_is_cancelled_not_retried(acme):
    message = accept(acme.client, Recipient("ann@example.com"))
    assert deliveries_claim(message_ids=[message.id], task_id="t", worker="w")

    answer = message_cancel(message=message)
    Delivery.objects.filter(message=message).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)  # the lease ended
    )
    deliveries_dispatch()

    assert answer == Cancellation(cancelled=[], requested=["ann@example.com"])
    delivery = message.deliveries.get()
    assert (delivery.status, delivery.lost_attempts) == (S.CANCELLED, 1)
    assert delivery.attempt_set.get().outcome == Attempt.Outcome.LOST
    assert Message.objects.get(id=message.id).status == MessageStatus.CANCELLED


def test_a_cancel_cancels_what_waits_and_asks_for_what_is_being_sent(acme, settings):
    settings.MAILHUB_DOMAIN_RATE_PER_MINUTE = 1  # the claim takes one recipient, one waits
    message = accept(acme.client, Recipient("ann@example.com"), Recipient("bob@example.com"))
    [claim] = deliveries_claim(message_ids=[message.id], task_id="t", worker="w")
    [sending] = claim.claimed

    answer = message_cancel(message=message)
    again = message_cancel(message=message)

    waiting = message.deliveries.exclude(id=sending.id).get()
    assert answer == Cancellation(cancelled=[waiting.address], requested=[sending.address])
    assert again == Cancellation(cancelled=[], requested=[])
    assert Message.objects.get(id=message.id).status == MessageStatus.SENDING

    reply = SmtpReply(451, "4.3.0 try later", Stage.DATA)
    attempts_record(claims=[claim], replies={sending.id: reply}, durations={})

    assert set(message.deliveries.values_list("status", flat=True)) == {S.CANCELLED}
    assert Message.objects.get(id=message.id).status == MessageStatus.CANCELLED


def test_an_operators_retry_overrules_an_earlier_cancel_request(acme, settings):
    settings.MAILHUB_MAX_ATTEMPTS = 1
    message = accept(acme.client, Recipient("ann@example.com"))
    transport = CancellingTransport(message, SmtpReply(451, "4.7.1 later", Stage.RCPT))
    deliveries_send(message_ids=[message.id], task_id="t", worker="w", transport=transport)
    delivery = message.deliveries.get()
    assert (delivery.status, delivery.cancel_requested) == (S.FAILED, True)

    deliveries_retry_now(delivery_ids=[delivery.id])

    delivery.refresh_from_db()
    assert (delivery.status, delivery.cancel_requested) == (S.QUEUED, False)


# -- through the API, with a real worker and SMTP server ----------------------------------------


def post(actor, **overrides) -> uuid.UUID:
    response = actor.api.post(URL, message_payload(**overrides), format="json")
    assert response.status_code == 202, response.content
    return uuid.UUID(response.json()["id"])


def cancel_while_sending(actor, message_id: uuid.UUID) -> dict:
    wait_until(
        lambda: Delivery.objects.filter(message_id=message_id, status=S.SENDING).exists(),
        timeout=10,
        what="a worker to start sending",
    )
    response = actor.api.post(f"{URL}/{message_id}/cancel")
    assert response.status_code == 200, response.content
    return response.json()


def test_the_api_cancels_a_message_whose_attempt_is_deferred_after_the_cancel(sink, acme):
    sink.script_data(HANG)  # the server says nothing for 3 s, then 451
    message_id = post(acme, to=["ann@example.com"])

    answer = cancel_while_sending(acme, message_id)

    assert (answer["status"], answer["cancelled"]) == ("sending", [])
    assert answer["cancel_requested"] == ["ann@example.com"]
    message = wait_until_final(message_id)
    assert message.status == MessageStatus.CANCELLED
    delivery = Delivery.objects.get(message_id=message_id)
    assert delivery.attempt_set.get().outcome == Attempt.Outcome.DEFERRED
    assert event_types(delivery) == ["accepted", "deferred", "cancelled"]
    cancelled = Event.objects.get(delivery=delivery, type=Event.Type.CANCELLED)
    assert cancelled.reply.startswith("cancelled at the client's request")
    assert sink.received == []


def test_the_api_cannot_unsend_a_message_its_attempt_delivers(sink, acme):
    sink.delay_seconds = 1.5  # a slow relay: the cancel comes while DATA is on its way
    message_id = post(acme, to=["ann@example.com"])

    answer = cancel_while_sending(acme, message_id)

    assert answer["cancel_requested"] == ["ann@example.com"]
    assert wait_until_final(message_id).status == MessageStatus.DELIVERED
    assert len(sink.wait_for(1)) == 1
