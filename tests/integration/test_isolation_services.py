"""One message's fault stays its own, in the sending services on the real Postgres (and, for what
the dispatcher publishes, the real RabbitMQ), with transports that answer as a test needs: a
message that cannot be built or addressed fails alone, one whose sending raises is retried alone,
anything else releases what the task claimed at once, and a delivery whose attempts keep being
lost is quarantined and sent in a task of its own meanwhile."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from kombu import Queue

from deliveries.dispatcher import deliveries_dispatch
from deliveries.models import Attempt, Delivery, Event, Message, Suppression
from deliveries.policy import SmtpReply, Stage
from deliveries.services import Recipient, deliveries_claim, deliveries_send
from deliveries.smtp import Envelope
from deliveries.states import DeliveryStatus, MessageStatus
from mailhub.celery import app
from tests.integration.test_sending import RecordingTransport, accept

pytestmark = pytest.mark.integration
S = DeliveryStatus


class RaisingTransport(RecordingTransport):
    """Raises for envelopes naming ``fatal``, as a transport bug or smtplib choking would."""

    def __init__(self, fatal: str) -> None:
        super().__init__()
        self.fatal = fatal
        self.closed = 0

    def send(self, envelope: Envelope, *, deadline: float) -> dict[str, SmtpReply]:
        if self.fatal in envelope.recipients:
            raise RuntimeError("the transport broke on this one")
        return super().send(envelope, deadline=deadline)

    def close(self) -> None:
        self.closed += 1


class NulReplyTransport(RecordingTransport):
    """A relay whose reply holds a NUL byte: Postgres cannot store it, so recording fails after
    the mail went out, for reasons no message is to blame for."""

    def send(self, envelope: Envelope, *, deadline: float) -> dict[str, SmtpReply]:
        self.sent.append(envelope)
        reply = SmtpReply(250, "2.0.0 queued as \x00", Stage.DATA, "relay.test")
        return dict.fromkeys(envelope.recipients, reply)


def send(*messages: Message, transport: RecordingTransport, task_id: str = "t") -> dict:
    return deliveries_send(
        message_ids=[m.id for m in messages], task_id=task_id, worker="w", transport=transport
    )


def delivery_of(message: Message) -> Delivery:
    return Delivery.objects.get(message=message)


def test_a_message_that_cannot_be_built_fails_alone_and_the_others_go_out(acme, globex):
    before = accept(acme.client, Recipient("ann@example.com"))
    poison = accept(acme.client, Recipient("bob@example.com"), subject="a\x0bb")
    after = accept(globex.client, Recipient("cy@example.org"))
    transport = RecordingTransport()

    decisions = send(before, poison, after, transport=transport)

    assert sorted(e.recipients for e in transport.sent) == [["ann@example.com"], ["cy@example.org"]]
    assert delivery_of(before).status == delivery_of(after).status == S.DELIVERED
    failed = delivery_of(poison)
    assert decisions[failed.id].status == S.FAILED
    assert failed.status == S.FAILED and failed.next_attempt_at is None
    assert failed.last_reply.startswith("the message could not be built: the Subject header")
    assert failed.last_code is None
    [attempt] = failed.attempt_set.all()
    assert (attempt.outcome, attempt.smtp_code, attempt.reply) == (
        "failed",
        None,
        failed.last_reply,
    )
    [event] = Event.objects.filter(delivery=failed, type=Event.Type.FAILED)
    assert event.reply == failed.last_reply
    assert Message.objects.get(id=poison.id).status == MessageStatus.FAILED
    assert not Suppression.objects.exists()  # not a bounce


def test_a_recipient_the_envelope_cannot_carry_fails_alone_and_the_others_get_the_message(acme):
    message = accept(acme.client, Recipient("ann@example.com"), Recipient("j\u00f6rg@example.com"))
    transport = RecordingTransport()

    send(message, transport=transport)

    [envelope] = transport.sent
    assert envelope.recipients == ["ann@example.com"]
    statuses = dict(message.deliveries.values_list("address", "status"))
    assert statuses == {"ann@example.com": S.DELIVERED, "j\u00f6rg@example.com": S.FAILED}
    refused = message.deliveries.get(status=S.FAILED)
    assert refused.last_reply.startswith("the envelope could not be written: the recipient")
    assert Message.objects.get(id=message.id).status == MessageStatus.PARTIALLY_DELIVERED


def test_a_transport_that_raises_defers_that_message_alone_and_drops_its_connection(acme):
    first = accept(acme.client, Recipient("ann@example.com"))
    broken = accept(acme.client, Recipient("boom@example.com"))
    last = accept(acme.client, Recipient("cy@example.com"))
    transport = RaisingTransport("boom@example.com")

    send(first, broken, last, transport=transport)

    assert delivery_of(first).status == delivery_of(last).status == S.DELIVERED
    deferred = delivery_of(broken)
    assert deferred.status == S.DEFERRED and deferred.attempts == 1
    assert deferred.next_attempt_at > timezone.now()
    assert deferred.relay_failures == 0  # counted: a message that always does this ends failed
    assert "unexpected error while sending: RuntimeError: the transport broke on this one" in (
        deferred.last_reply
    )
    assert deferred.attempt_set.get().outcome == Attempt.Outcome.DEFERRED
    assert transport.closed == 1


def test_a_message_whose_sending_keeps_raising_ends_failed_after_its_attempts(acme, settings):
    settings.MAILHUB_MAX_ATTEMPTS = 2
    broken = accept(acme.client, Recipient("boom@example.com"))
    transport = RaisingTransport("boom@example.com")

    send(broken, transport=transport)
    Delivery.objects.filter(message=broken).update(status=S.QUEUED)  # as the dispatcher would
    send(broken, transport=transport, task_id="t2")

    failed = delivery_of(broken)
    assert (failed.status, failed.attempts) == (S.FAILED, 2)
    assert "gave up after 2 attempts" in failed.last_reply


def test_a_failure_after_sending_releases_every_claimed_delivery_at_once(acme, globex, settings):
    settings.MAILHUB_DOMAIN_CONCURRENCY = 1
    messages = [
        accept(actor.client, Recipient(f"{actor.client.name}@example.com"))
        for actor in (acme, globex)
    ]
    transport = NulReplyTransport()

    with pytest.raises(ValueError, match="NUL"):
        send(*messages, transport=transport)

    for message in messages:
        delivery = delivery_of(message)
        assert delivery.status == S.DEFERRED, "left to its lease"
        assert delivery.lost_attempts == 1
        assert delivery.last_reply.startswith("no reply the task failed before it reported: ")
        attempt = delivery.attempt_set.get()
        assert attempt.outcome == Attempt.Outcome.LOST and "NUL" in attempt.reply
        assert Message.objects.get(id=message.id).status == MessageStatus.DEFERRED
    # The domain's one connection is free again at once, not when the lease ends.
    other = accept(acme.client, Recipient("next@example.com"))
    assert deliveries_claim(message_ids=[other.id], task_id="t2", worker="w")


def test_an_unbuildable_message_holds_no_domain_slot_after_its_task(acme, settings):
    settings.MAILHUB_DOMAIN_CONCURRENCY = 1
    poison = accept(acme.client, Recipient("ann@example.com"), subject="hi\u2028x")
    send(poison, transport=RecordingTransport())

    other = accept(acme.client, Recipient("bob@example.com"))
    assert deliveries_claim(message_ids=[other.id], task_id="t2", worker="w")


# -- lost attempts: quarantine, and a task of its own --------------------------------------------


@contextmanager
def published_tasks() -> Iterator[list[list[str]]]:
    """Route the delivery tasks published inside the block to a queue of this test's own; then
    give the message ids each one carries."""
    queue = f"{settings.MAILHUB_QUEUE_PREFIX}isolation-{uuid.uuid4().hex[:8]}"
    tasks: list[list[str]] = []
    with override_settings(MAILHUB_QUEUES=dict.fromkeys(("high", "normal", "low"), queue)):
        yield tasks
    with app.connection_for_write() as connection:
        bound = Queue(queue).bind(connection.default_channel)
        while (message := bound.get(no_ack=True)) is not None:
            args, _, _ = message.decode()
            tasks.append(args[0])
        bound.delete()


def lose_attempt(message: Message, *, task_id: str) -> None:
    """Claim the message as a worker would, then let the worker die: its lease ends and the
    dispatcher takes the deliveries back."""
    Delivery.objects.filter(message=message, status=S.DEFERRED).update(
        status=S.QUEUED  # released, as the dispatcher does when the retry is due
    )
    assert deliveries_claim(message_ids=[message.id], task_id=task_id, worker="w")
    Delivery.objects.filter(message=message).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    deliveries_dispatch()


def test_a_delivery_lost_three_times_is_quarantined_not_retried_and_not_suppressed(acme):
    message = accept(acme.client, Recipient("ann@example.com"))

    for number in (1, 2):
        lose_attempt(message, task_id=f"t{number}")
        delivery = delivery_of(message)
        assert (delivery.status, delivery.lost_attempts) == (S.DEFERRED, number)
    lose_attempt(message, task_id="t3")

    delivery = delivery_of(message)
    assert (delivery.status, delivery.attempts, delivery.lost_attempts) == (S.FAILED, 3, 3)
    assert delivery.next_attempt_at is None
    assert "quarantined: 3 attempts were lost" in delivery.last_reply
    outcomes = list(delivery.attempt_set.order_by("number").values_list("outcome", flat=True))
    assert outcomes == ["lost"] * 3
    assert Event.objects.filter(delivery=delivery, type=Event.Type.FAILED).count() == 1
    assert Message.objects.get(id=message.id).status == MessageStatus.FAILED
    assert not Suppression.objects.exists()


def test_a_message_with_a_lost_attempt_is_published_in_a_task_of_its_own(acme):
    lost = [accept(acme.client, Recipient(f"lost{i}@example.com")) for i in range(2)]
    healthy = [accept(acme.client, Recipient(f"ok{i}@example.com")) for i in range(3)]
    for message in lost:
        lose_attempt(message, task_id=f"task-{message.id}")
    due = timezone.now() - timedelta(seconds=1)
    # The lost ones deferred (released now), the healthy ones queued (published again now).
    Delivery.objects.filter(message__in=lost + healthy).update(next_attempt_at=due)

    with published_tasks() as tasks:
        deliveries_dispatch()

    ids = {message.id: str(message.id) for message in lost + healthy}
    assert sorted(sorted(task) for task in tasks) == sorted(
        [[ids[m.id]] for m in lost] + [sorted(ids[m.id] for m in healthy)]
    ), "each lost message alone, the healthy ones together"
