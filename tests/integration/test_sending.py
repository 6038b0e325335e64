"""The sending services in this process on the real Postgres, with a recording transport: what is
claimed, what goes on the wire, what is recorded, and what is left alone."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from deliveries.mime import build_mime
from deliveries.models import Attempt, Delivery, Event, Message, Suppression
from deliveries.policy import SmtpReply, Stage
from deliveries.services import (
    AttachmentDraft,
    MessageDraft,
    Recipient,
    attempts_record,
    deliveries_claim,
    deliveries_send,
    delivery_mark_lost,
    message_accept,
)
from deliveries.smtp import Envelope
from deliveries.states import DeliveryStatus, MessageStatus, message_status_for, message_status_sql
from deliveries.tokens import delivery_of_verp_address

pytestmark = pytest.mark.integration
S = DeliveryStatus
OK = SmtpReply(250, "2.0.0 OK queued", Stage.DATA, "relay.test")


class RecordingTransport:
    def __init__(self) -> None:
        self.sent: list[Envelope] = []

    def send(self, envelope: Envelope, *, deadline: float) -> dict[str, SmtpReply]:
        self.sent.append(envelope)
        return {address: OK for address in envelope.recipients}

    def close(self) -> None:
        pass


def accept(client, *recipients: Recipient, **fields) -> Message:
    draft = {"sender": "Shop <no-reply@shop.test>", "subject": "Hello", "text": "Hi."} | fields
    return message_accept(client=client, draft=MessageDraft(recipients=recipients, **draft))


def without_boundaries(content: bytes) -> bytes:
    return re.sub(rb"={15}\d+==", b"BOUNDARY", content)


def statuses(message: Message) -> list[str]:
    return list(message.deliveries.order_by("id").values_list("status", flat=True))


def test_the_sql_roll_up_is_message_status_for_on_every_set_of_statuses(db):
    sql = f"SELECT {message_status_sql('status')} FROM unnest(%s::text[]) AS status"
    with connection.cursor() as cursor:
        for size in range(1, len(S) + 1):
            for present in itertools.combinations([status.value for status in S], size):
                cursor.execute(sql, [list(present)])
                assert cursor.fetchone()[0] == message_status_for(present), present


def test_a_message_goes_once_to_all_its_recipients_with_every_outcome_recorded(acme):
    message = accept(
        acme.client,
        Recipient("ann@example.com", "Ann"),
        Recipient("cy@example.com", "Cy", "cc"),
        Recipient("hidden@example.com", "", "bcc"),
        html="<p>Hi.</p>",
        headers={"X-Campaign": "spring"},
        attachments=[AttachmentDraft("a.txt", "text/plain", b"attached\n")],
    )
    transport = RecordingTransport()

    decisions = deliveries_send(
        message_ids=[str(message.id)], task_id="task-1", worker="w1", transport=transport
    )

    [envelope] = transport.sent
    assert envelope.sender == "no-reply@shop.test"
    assert envelope.recipients == ["ann@example.com", "cy@example.com", "hidden@example.com"]
    stored = Message.objects.get(id=message.id)
    expected = build_mime(stored, stored.deliveries.order_by("id"), stored.attachments.all())
    assert without_boundaries(envelope.content) == without_boundaries(expected)
    assert set(decisions) == set(stored.deliveries.values_list("id", flat=True))
    assert statuses(message) == [S.DELIVERED] * 3
    assert stored.status == MessageStatus.DELIVERED
    attempts = Attempt.objects.filter(delivery__message=message)
    assert {(a.number, a.task_id, a.worker, a.outcome, a.smtp_code, a.relay) for a in attempts} == {
        (1, "task-1", "w1", "delivered", 250, "relay.test")
    }
    events = Event.objects.filter(message=message, type=Event.Type.DELIVERED)
    assert sorted((e.recipient, e.attempt, e.smtp_code) for e in events) == [
        ("ann@example.com", 1, 250),
        ("cy@example.com", 1, 250),
        ("hidden@example.com", 1, 250),
    ]


def test_a_task_run_twice_sends_once(acme):
    message = accept(acme.client, Recipient("ann@example.com"))
    transport = RecordingTransport()
    for _ in range(2):
        deliveries_send(message_ids=[message.id], task_id="t", worker="w", transport=transport)
    assert len(transport.sent) == 1
    assert Attempt.objects.filter(delivery__message=message).count() == 1


def test_the_headers_name_recipients_that_are_not_being_sent_to(acme):
    Suppression.objects.create(client=acme.client, address="gone@example.com")
    message = accept(acme.client, Recipient("ann@example.com"), Recipient("gone@example.com"))
    transport = RecordingTransport()

    deliveries_send(message_ids=[message.id], task_id="t", worker="w", transport=transport)

    [envelope] = transport.sent
    assert envelope.recipients == ["ann@example.com"]
    assert b"To: ann@example.com, gone@example.com\r\n" in envelope.content
    assert statuses(message) == [S.DELIVERED, S.SUPPRESSED]
    assert Message.objects.get(id=message.id).status == MessageStatus.PARTIALLY_DELIVERED


def test_a_claimed_message_is_sending_and_its_attempts_pending(acme):
    message = accept(acme.client, Recipient("ann@example.com"), Recipient("bob@example.org"))

    [claim] = deliveries_claim(message_ids=[message.id], task_id="t", worker="w")

    assert [d.attempts for d in claim.claimed] == [1, 1]
    assert statuses(message) == [S.SENDING, S.SENDING]
    assert Message.objects.get(id=message.id).status == MessageStatus.SENDING
    lease_ends = set(message.deliveries.values_list("next_attempt_at", flat=True))
    assert len(lease_ends) == 1 and lease_ends.pop() > timezone.now() + timedelta(seconds=60)
    pending = Attempt.objects.filter(delivery__message=message, outcome=Attempt.Outcome.PENDING)
    assert sorted(claim.attempt_ids.values()) == sorted(pending.values_list("id", flat=True))


def test_a_late_report_does_not_move_a_delivery_whose_lease_was_taken_back(acme):
    message = accept(acme.client, Recipient("ann@example.com"))
    [claim] = deliveries_claim(message_ids=[message.id], task_id="t", worker="w")
    [delivery] = claim.claimed
    delivery_mark_lost(
        delivery_id=delivery.id,
        attempts=delivery.attempts,
        expires_at=claim.message.expires_at,
        now=timezone.now(),
    )

    attempts_record(claims=[claim], replies={delivery.id: OK}, durations={message.id: 5})

    assert statuses(message) == [S.DEFERRED]
    assert not Event.objects.filter(message=message, type=Event.Type.DELIVERED).exists()
    attempt = Attempt.objects.get(delivery=delivery)
    assert (attempt.smtp_code, attempt.outcome) == (250, "delivered")
    assert Message.objects.get(id=message.id).status == MessageStatus.DEFERRED


def test_an_expired_message_is_failed_instead_of_sent(acme):
    message = accept(acme.client, Recipient("ann@example.com"))
    Message.objects.filter(id=message.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    transport = RecordingTransport()

    deliveries_send(message_ids=[message.id], task_id="t", worker="w", transport=transport)

    assert transport.sent == []
    assert statuses(message) == [S.FAILED]
    assert Message.objects.get(id=message.id).status == MessageStatus.FAILED
    assert Event.objects.filter(message=message, type=Event.Type.FAILED).count() == 1


def test_a_domain_at_its_connection_limit_holds_other_tasks_back(acme, settings):
    settings.MAILHUB_DOMAIN_CONCURRENCY = 2
    first = accept(acme.client, Recipient("a1@example.com"), Recipient("a2@example.com"))
    second, third = (accept(acme.client, Recipient(f"u{i}@example.com")) for i in range(2))
    other = accept(acme.client, Recipient("ann@example.org"))

    # A task is one connection, however many of the domain's deliveries it sends.
    assert deliveries_claim(message_ids=[first.id], task_id="t1", worker="w")
    assert deliveries_claim(message_ids=[second.id], task_id="t2", worker="w")
    assert deliveries_claim(message_ids=[third.id, other.id], task_id="t3", worker="w")

    assert statuses(third) == [S.QUEUED]
    assert statuses(other) == [S.SENDING]
    held = third.deliveries.get()
    assert held.attempts == 0 and held.next_attempt_at > timezone.now()


def test_a_domain_rate_limit_admits_only_what_is_left_of_the_minute(acme, settings):
    settings.MAILHUB_DOMAIN_RATE_PER_MINUTE = 2
    message = accept(acme.client, *(Recipient(f"u{i}@example.com") for i in range(3)))

    [claim] = deliveries_claim(message_ids=[message.id], task_id="t1", worker="w")

    assert len(claim.claimed) == 2
    assert sorted(statuses(message)) == [S.QUEUED, S.SENDING, S.SENDING]
    assert len(claim.recipients) == 3  # all of them still go in the headers
    assert deliveries_claim(message_ids=[message.id], task_id="t2", worker="w") == []
    assert Delivery.objects.filter(message=message, status=S.QUEUED).count() == 1


# -- VERP: one transaction per delivery, each with its own envelope sender ----------------------

BOUNCE_DOMAIN = "bounces.mailhub.test"


class UnreachableRelay(RecordingTransport):
    def send(self, envelope: Envelope, *, deadline: float) -> dict[str, SmtpReply]:
        self.sent.append(envelope)
        reply = SmtpReply(None, "cannot connect to relay.test:25", Stage.CONNECT, "relay.test")
        return dict.fromkeys(envelope.recipients, reply)


def test_with_a_bounce_domain_each_delivery_is_its_own_transaction_from_its_verp_address(
    acme, settings
):
    settings.MAILHUB_BOUNCE_DOMAIN = BOUNCE_DOMAIN
    message = accept(acme.client, Recipient("ann@example.com"), Recipient("bob@example.com"))
    transport = RecordingTransport()

    deliveries_send(message_ids=[message.id], task_id="t", worker="w", transport=transport)

    by_recipient = {tuple(envelope.recipients): envelope for envelope in transport.sent}
    assert set(by_recipient) == {("ann@example.com",), ("bob@example.com",)}
    for delivery in message.deliveries.all():
        envelope = by_recipient[(delivery.address,)]
        assert delivery_of_verp_address(envelope.sender, bounce_domain=BOUNCE_DOMAIN) == delivery.id
    assert transport.sent[0].content == transport.sent[1].content  # the same bytes to each
    assert statuses(message) == [S.DELIVERED] * 2
    assert Attempt.objects.filter(delivery__message=message, duration_ms__isnull=False).count() == 2


def test_with_a_bounce_domain_an_unreachable_relay_is_tried_once_for_the_whole_task(acme, settings):
    settings.MAILHUB_BOUNCE_DOMAIN = BOUNCE_DOMAIN
    first = accept(acme.client, Recipient("ann@example.com"), Recipient("bob@example.com"))
    second = accept(acme.client, Recipient("cy@example.com"))
    transport = UnreachableRelay()

    deliveries_send(message_ids=[first.id, second.id], task_id="t", worker="w", transport=transport)

    assert len(transport.sent) == 1
    assert statuses(first) == [S.DEFERRED] * 2
    assert statuses(second) == [S.DEFERRED]
