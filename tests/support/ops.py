"""Seeding for the operator-surface tests: messages accepted through the real service, then
walked through the real state machine to the status a test needs."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection
from django.db.models import F
from django.utils import timezone

from accounts.models import Client
from deliveries.models import Attempt, Delivery, Event, Message
from deliveries.services import (
    MessageDraft,
    Recipient,
    deliveries_transition,
    message_accept,
    messages_refresh_status,
)
from deliveries.states import DeliveryStatus

S = DeliveryStatus

#: The moves that bring a freshly queued delivery to each status.
PATHS: dict[str, list[DeliveryStatus]] = {
    S.QUEUED: [],
    S.SENDING: [S.SENDING],
    S.DEFERRED: [S.SENDING, S.DEFERRED],
    S.DELIVERED: [S.SENDING, S.DELIVERED],
    S.BOUNCED: [S.SENDING, S.BOUNCED],
    S.FAILED: [S.SENDING, S.FAILED],
    S.CANCELLED: [S.CANCELLED],
}

#: What the worker would write with each move.
FIELDS: dict[str, dict] = {
    S.SENDING: {"attempts": 1},
    S.DEFERRED: {"last_code": 451, "last_reply": "451 4.7.1 try later"},
    S.DELIVERED: {"last_code": 250, "last_reply": "250 2.0.0 OK", "next_attempt_at": None},
    S.BOUNCED: {"last_code": 550, "last_reply": "550 5.1.1 no such user", "next_attempt_at": None},
    S.FAILED: {"last_code": 451, "last_reply": "451 4.7.1 try later; gave up"},
    S.CANCELLED: {"next_attempt_at": None},
}


def seed_message(
    client: Client,
    *,
    status: str = S.QUEUED,
    recipients: tuple[str, ...] = ("ann@example.com",),
    priority: str = "normal",
    subject: str = "Your code is 123456",
    age: timedelta | None = None,
    send_at: datetime | None = None,
) -> Message:
    """A message accepted like any other, its deliveries moved to ``status``, optionally made
    ``age`` old (its acceptance and lifetime shifted back together)."""
    message = message_accept(
        client=client,
        draft=MessageDraft(
            sender="Shop <no-reply@shop.test>",
            recipients=[Recipient(address=address) for address in recipients],
            subject=subject,
            text="Your verification code is 123456.",
            html="<p>Your code is <b>123456</b></p>",
            priority=priority,
            send_at=send_at,
        ),
    )
    ids = list(message.deliveries.values_list("id", flat=True))
    now = timezone.now()
    for step in PATHS[status]:
        fields = dict(FIELDS[step])
        if step == S.DEFERRED:
            fields["next_attempt_at"] = now + timedelta(minutes=5)
        if step == S.SENDING:
            fields["next_attempt_at"] = now + timedelta(minutes=5)
        assert deliveries_transition(delivery_ids=ids, to=step, **fields) == len(ids)
    if status in (S.DEFERRED, S.DELIVERED, S.BOUNCED, S.FAILED):
        outcomes: dict[str, str] = {S.DEFERRED: "deferred", S.DELIVERED: "delivered"}
        outcome = outcomes.get(status, status)
        code = FIELDS[status]["last_code"]
        Attempt.objects.bulk_create(
            Attempt(
                delivery_id=delivery_id,
                number=1,
                worker="general@test",
                task_id="task-1",
                started_at=now,
                duration_ms=12,
                smtp_code=code,
                enhanced_code=FIELDS[status]["last_reply"].split()[1],
                reply=FIELDS[status]["last_reply"],
                outcome=outcome,
            )
            for delivery_id in ids
        )
    messages_refresh_status(message_ids=[message.id])
    if age is not None:
        Message.objects.filter(id=message.id).update(
            created_at=F("created_at") - age, expires_at=F("expires_at") - age
        )
    message.refresh_from_db()
    return message


def seed_message_at(client: Client, when: datetime) -> Message:
    """A delivered message accepted at ``when``, its events and attempt dated then too (in that
    day's history partition, or the DEFAULT one)."""
    message = seed_message(client, status=S.DELIVERED)
    Message.objects.filter(id=message.id).update(created_at=when, expires_at=when)
    Event.objects.filter(message=message).update(created_at=when)
    Attempt.objects.filter(delivery__message=message).update(started_at=when)
    with connection.cursor() as cursor:
        # The foreign keys' deferred checks, as the commit of real mail would have run them: a
        # partition with checks pending in the transaction cannot be dropped.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    message.refresh_from_db()
    return message


def statuses_of(message: Message) -> list[str]:
    return list(
        Delivery.objects.filter(message=message).order_by("id").values_list("status", flat=True)
    )
