"""Writes: accepting mail, the delivery state machine, claiming and recording attempts."""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from api.models import Client
from deliveries import conf
from deliveries.mime import build_mime, make_message_id
from deliveries.models import Attachment, Attempt, Delivery, Event, Message, Suppression
from deliveries.policy import (
    Decision,
    ReplyClass,
    SmtpReply,
    Stage,
    classify,
    decide,
    is_hard_bounce,
)
from deliveries.publisher import messages_publish
from deliveries.smtp import Envelope, Transport
from deliveries.states import DeliveryStatus, message_status_for, sources_of

logger = logging.getLogger(__name__)
S = DeliveryStatus


# -- the state machine's only writer ---------------------------------------------------------

#: The event a move to each status emits. Moves to `sending`, and back to `queued` for a retry,
#: are internal and emit none.
EVENT_FOR_STATUS: dict[DeliveryStatus, str] = {
    S.SCHEDULED: Event.Type.SCHEDULED,
    S.DELIVERED: Event.Type.DELIVERED,
    S.DEFERRED: Event.Type.DEFERRED,
    S.BOUNCED: Event.Type.BOUNCED,
    S.FAILED: Event.Type.FAILED,
    S.SUPPRESSED: Event.Type.SUPPRESSED,
    S.CANCELLED: Event.Type.CANCELLED,
}


def deliveries_transition(
    *, delivery_ids: Collection[int], to: DeliveryStatus, where: Q | None = None, **fields: Any
) -> int:
    """Move deliveries to ``to`` from any status allowed to reach it; return how many moved.

    The status condition is also the claim: a row another process already moved is skipped,
    so callers compare the count with what they asked for instead of reading first. Each move
    that clients care about writes its ``Event`` in the same transaction.
    """
    if "status" in fields:
        raise TypeError("pass the new status as `to`")
    now = timezone.now()
    queryset = Delivery.objects.filter(id__in=delivery_ids, status__in=sources_of(to))
    if where is not None:
        queryset = queryset.filter(where)
    event_type = EVENT_FOR_STATUS.get(to)
    if event_type is None:
        return queryset.update(status=to, updated_at=now, **fields)
    with transaction.atomic():
        # Lock, then update exactly the locked rows: the events then name the rows that moved.
        rows = list(
            queryset.select_for_update(of=("self",)).values_list(
                "id", "message_id", "message__client_id", "address", "attempts"
            )
        )
        if not rows:
            return 0
        Delivery.objects.filter(id__in=[row[0] for row in rows]).update(
            status=to, updated_at=now, **fields
        )
        Event.objects.bulk_create(
            Event(
                client_id=client_id,
                message_id=message_id,
                delivery_id=delivery_id,
                type=event_type,
                recipient=address,
                attempt=attempts,
                smtp_code=fields.get("last_code"),
                enhanced_code=fields.get("last_enhanced_code", ""),
                reply=fields.get("last_reply", ""),
                next_attempt_at=fields.get("next_attempt_at"),
                created_at=now,
            )
            for delivery_id, message_id, client_id, address, attempts in rows
        )
    return len(rows)


def delivery_transition(
    *, delivery_id: int, to: DeliveryStatus, where: Q | None = None, **fields: Any
) -> bool:
    return deliveries_transition(delivery_ids=[delivery_id], to=to, where=where, **fields) == 1


def messages_refresh_status(*, message_ids: Iterable[UUID]) -> None:
    """Recompute each message's status from its deliveries, in the caller's transaction.

    The message rows are locked first (in id order, so two callers cannot deadlock) so that the
    statuses read next include every change committed before ours.
    """
    ids = sorted(set(message_ids))
    if not ids:
        return
    list(Message.objects.select_for_update().filter(id__in=ids).order_by("id").values_list("id"))
    statuses: dict[UUID, list[str]] = defaultdict(list)
    for message_id, status in Delivery.objects.filter(message_id__in=ids).values_list(
        "message_id", "status"
    ):
        statuses[message_id].append(status)
    by_status: dict[str, list[UUID]] = defaultdict(list)
    for message_id, delivery_statuses in statuses.items():
        by_status[message_status_for(delivery_statuses)].append(message_id)
    for status, message_ids_with_status in by_status.items():
        Message.objects.filter(id__in=message_ids_with_status).exclude(status=status).update(
            status=status
        )


# -- accepting mail --------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    address: str
    name: str = ""
    kind: str = Delivery.Kind.TO


@dataclass(frozen=True)
class AttachmentDraft:
    filename: str
    content_type: str
    content: bytes
    content_id: str = ""  # set for an inline part the HTML refers to as cid:...


@dataclass(frozen=True)
class MessageDraft:
    """A validated message, as ``api.serializers`` (or the email backend) hands it over."""

    sender: str
    recipients: Sequence[Recipient]
    subject: str = ""
    text: str = ""
    html: str = ""
    reply_to: Sequence[str] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    priority: str = "normal"
    send_at: datetime | None = None
    tags: Sequence[str] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    attachments: Sequence[AttachmentDraft] = ()
    template_name: str = ""


def message_accept(*, client: Client, draft: MessageDraft) -> Message:
    """Accept one message; see ``messages_accept``."""
    return messages_accept(client=client, drafts=[draft])[0]


def messages_accept(*, client: Client, drafts: Sequence[MessageDraft]) -> list[Message]:
    """Store messages, one delivery per distinct recipient and their events, in ONE transaction;
    publish the ones due now after commit.

    Input must already be validated. A recipient named twice (say in To and Bcc) gets one
    delivery, under the first kind it was named with. A suppressed address gets a delivery in
    `suppressed` and is never sent to. A message with a future ``send_at`` waits `scheduled`.
    """
    now = timezone.now()
    suppressed = _suppressed_addresses(client=client, drafts=drafts)
    messages: list[Message] = []
    deliveries: list[Delivery] = []
    attachments: list[Attachment] = []
    for draft in drafts:
        message = _new_message(client=client, draft=draft, now=now)
        messages.append(message)
        deliveries.extend(_new_deliveries(message=message, draft=draft, suppressed=suppressed))
        attachments.extend(
            Attachment(
                message=message,
                filename=part.filename,
                content_type=part.content_type,
                content=part.content,
                content_id=part.content_id,
                size=len(part.content),
            )
            for part in draft.attachments
        )
    by_message: dict[UUID, list[str]] = defaultdict(list)
    for delivery in deliveries:
        by_message[delivery.message_id].append(delivery.status)
    for message in messages:
        message.status = message_status_for(by_message[message.id])
    due_now = [(m.id, m.priority) for m in messages if S.QUEUED in by_message[m.id]]
    with transaction.atomic():
        Message.objects.bulk_create(messages)
        Delivery.objects.bulk_create(deliveries)
        Attachment.objects.bulk_create(attachments)
        Event.objects.bulk_create(_acceptance_event(d, client, now) for d in deliveries)
        if due_now:
            # After commit, so a worker never looks for a row that is not there yet. If the
            # publish fails the rows stay `queued` and the dispatcher publishes them later.
            transaction.on_commit(lambda: messages_publish(messages=due_now), robust=True)
    return messages


_ACCEPTANCE_EVENT = {
    S.QUEUED: Event.Type.ACCEPTED,
    S.SCHEDULED: Event.Type.SCHEDULED,
    S.SUPPRESSED: Event.Type.SUPPRESSED,
}


def _acceptance_event(delivery: Delivery, client: Client, now: datetime) -> Event:
    return Event(
        client=client,
        message_id=delivery.message_id,
        delivery=delivery,
        type=_ACCEPTANCE_EVENT[delivery.status],
        recipient=delivery.address,
        reply=delivery.last_reply,
        next_attempt_at=delivery.next_attempt_at if delivery.status == S.SCHEDULED else None,
        created_at=now,
    )


def _suppressed_addresses(*, client: Client, drafts: Sequence[MessageDraft]) -> dict[str, str]:
    addresses = {r.address.lower() for draft in drafts for r in draft.recipients}
    return dict(
        Suppression.objects.filter(client=client, address__in=addresses).values_list(
            "address", "reason"
        )
    )


def _new_message(*, client: Client, draft: MessageDraft, now: datetime) -> Message:
    message_uuid = uuid.uuid4()
    starts_at = draft.send_at if draft.send_at and draft.send_at > now else now
    return Message(
        id=message_uuid,
        client=client,
        sender=draft.sender,
        reply_to=list(draft.reply_to),
        subject=draft.subject,
        text_body=draft.text,
        html_body=draft.html,
        headers=dict(draft.headers),
        priority=draft.priority,
        tags=list(draft.tags),
        metadata=dict(draft.metadata),
        template_name=draft.template_name,
        message_id=make_message_id(
            unique=message_uuid.hex, sender_address=parseaddr(draft.sender)[1]
        ),
        created_at=now,
        send_at=draft.send_at,
        # The lifetime runs from when the message may first be sent.
        expires_at=starts_at + conf.message_lifetime(),
    )


def _new_deliveries(
    *, message: Message, draft: MessageDraft, suppressed: Mapping[str, str]
) -> list[Delivery]:
    now = message.created_at
    scheduled = message.send_at is not None and message.send_at > now
    seen: set[str] = set()
    deliveries = []
    for recipient in draft.recipients:
        key = recipient.address.lower()
        if key in seen:
            continue
        seen.add(key)
        delivery = Delivery(
            message=message,
            address=recipient.address,
            name=recipient.name,
            kind=recipient.kind,
            updated_at=now,
        )
        if key in suppressed:
            delivery.status = S.SUPPRESSED
            delivery.last_reply = f"address is on the suppression list ({suppressed[key]})"
        elif scheduled:
            delivery.status = S.SCHEDULED
            delivery.next_attempt_at = message.send_at
        else:
            delivery.status = S.QUEUED
            delivery.next_attempt_at = now + conf.republish_after()
        deliveries.append(delivery)
    return deliveries


def suppression_add(*, client_id: int, address: str, reason: str, detail: str = "") -> bool:
    """Suppress an address for a client; return False if it already was (first reason kept)."""
    _, created = Suppression.objects.get_or_create(
        client_id=client_id,
        address=address.lower(),
        defaults={"reason": reason, "detail": detail[:1000]},
    )
    return created


def message_cancel(*, message: Message) -> list[str]:
    """Cancel every delivery of the message not yet sent; return the addresses cancelled.

    A delivery being sent right now is not cancelled: its SMTP transaction may already be done.
    """
    with transaction.atomic():
        pending = list(
            Delivery.objects.filter(
                message=message, status__in=[S.SCHEDULED, S.QUEUED, S.DEFERRED]
            ).values_list("id", "address")
        )
        moved = deliveries_transition(
            delivery_ids=[delivery_id for delivery_id, _ in pending],
            to=S.CANCELLED,
            next_attempt_at=None,
            last_reply="cancelled at the client's request",
        )
        if not moved:
            return []
        messages_refresh_status(message_ids=[message.id])
        return list(
            Delivery.objects.filter(
                id__in=[delivery_id for delivery_id, _ in pending], status=S.CANCELLED
            ).values_list("address", flat=True)
        )


# -- delivering ------------------------------------------------------------------------------


@dataclass
class Claim:
    message: Message
    recipients: list[Delivery]  # every recipient of the message: the headers name them all
    claimed: list[Delivery]  # those this attempt sends to, `attempts` already counting it
    attempts: dict[int, Attempt] = field(default_factory=dict)  # by delivery id


def deliveries_claim(*, message_id: UUID | str, task_id: str, worker: str) -> Claim | None:
    """Take the message's queued deliveries for this task, or return None if there are none.

    Rows locked by another worker are skipped, so a task published twice sends once. The lease
    (``next_attempt_at`` while sending) tells the dispatcher when to assume this worker died.
    """
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(message_id=message_id, status=S.QUEUED)
            .order_by("id")
        )
        if not rows:
            return None
        message = Message.objects.get(id=message_id)
        ids = [row.id for row in rows]
        if message.expires_at <= now:
            deliveries_transition(
                delivery_ids=ids,
                to=S.FAILED,
                next_attempt_at=None,
                last_reply="message lifetime exceeded before it could be sent",
            )
            messages_refresh_status(message_ids=[message.id])
            return None
        deliveries_transition(
            delivery_ids=ids,
            to=S.SENDING,
            attempts=F("attempts") + 1,
            next_attempt_at=now + conf.lease(),
        )
        claim = Claim(message=message, recipients=[], claimed=rows)
        for row in rows:
            row.attempts += 1
            row.status = S.SENDING
        attempts = Attempt.objects.bulk_create(
            Attempt(
                delivery=row,
                number=row.attempts,
                task_id=task_id or "",
                worker=worker or "",
                started_at=now,
            )
            for row in rows
        )
        claim.attempts = {attempt.delivery_id: attempt for attempt in attempts}
        messages_refresh_status(message_ids=[message.id])
    claim.recipients = list(
        Delivery.objects.filter(message_id=message.id).only("address", "name", "kind")
    )
    return claim


_OUTCOME_FOR = {
    S.DELIVERED: Attempt.Outcome.DELIVERED,
    S.DEFERRED: Attempt.Outcome.DEFERRED,
    S.BOUNCED: Attempt.Outcome.BOUNCED,
    S.FAILED: Attempt.Outcome.FAILED,
}


def attempts_record(
    *, claim: Claim, replies: Mapping[str, SmtpReply], duration_ms: int
) -> dict[int, Decision]:
    """Record each claimed delivery's reply and move it on, in one transaction.

    A delivery whose lease expired meanwhile has been taken back by the dispatcher; its attempt
    still gets the server's reply (so a late success shows up as a likely duplicate), but its
    status is left to whoever owns it now.
    """
    now = timezone.now()
    policy = conf.retry_policy()
    decisions: dict[int, Decision] = {}
    with transaction.atomic():
        for delivery in claim.claimed:
            reply = replies[delivery.address]
            decision = decide(
                reply_class=classify(reply),
                attempts=delivery.attempts,
                now=now,
                expires_at=claim.message.expires_at,
                policy=policy,
            )
            decisions[delivery.id] = decision
            delivery_transition(
                delivery_id=delivery.id,
                to=decision.status,
                where=Q(status=S.SENDING, attempts=delivery.attempts),
                next_attempt_at=decision.next_attempt_at,
                last_code=reply.code,
                last_enhanced_code=reply.enhanced_code,
                last_reply=_reply_text(reply, decision),
                delivered_at=now if decision.status == S.DELIVERED else None,
            )
            if decision.status == S.BOUNCED and is_hard_bounce(reply):
                suppression_add(
                    client_id=claim.message.client_id,
                    address=delivery.address,
                    reason=Suppression.Reason.HARD_BOUNCE,
                    detail=str(reply),
                )
            attempt = claim.attempts[delivery.id]
            attempt.outcome = _OUTCOME_FOR[decision.status]
            attempt.smtp_code = reply.code
            attempt.enhanced_code = reply.enhanced_code
            attempt.reply = reply.text
            attempt.duration_ms = duration_ms
        Attempt.objects.bulk_update(
            claim.attempts.values(),
            ["outcome", "smtp_code", "enhanced_code", "reply", "duration_ms"],
        )
        messages_refresh_status(message_ids=[claim.message.id])
    return decisions


def _reply_text(reply: SmtpReply, decision: Decision) -> str:
    text = str(reply)
    return f"{text}; {decision.reason}" if decision.reason and decision.status == S.FAILED else text


def delivery_send(
    *, message_id: UUID | str, task_id: str, worker: str, transport: Transport
) -> dict[int, Decision] | None:
    """Claim a message's queued deliveries, send them in one SMTP transaction, record the result.

    Safe to run twice for one message: the second run finds nothing to claim. SMTP is never
    spoken inside a database transaction.
    """
    claim = deliveries_claim(message_id=message_id, task_id=task_id, worker=worker)
    if claim is None:
        return None
    content = build_mime(claim.message, claim.recipients, claim.message.attachments.all())
    envelope = Envelope(
        sender=parseaddr(claim.message.sender)[1],
        recipients=[delivery.address for delivery in claim.claimed],
        content=content,
    )
    started = time.monotonic()
    # Give up a little before the lease ends, so that the dispatcher never takes back a delivery
    # whose attempt is still running.
    deadline = started + max(conf.lease().total_seconds() - 10, 1)
    replies = transport.send(envelope, deadline=deadline)
    duration_ms = int((time.monotonic() - started) * 1000)
    return attempts_record(claim=claim, replies=replies, duration_ms=duration_ms)


def delivery_mark_lost(*, delivery_id: int, attempts: int, expires_at, now) -> Decision:
    """Settle a delivery whose worker's lease expired: the attempt is lost, the delivery retried.

    Counted as a failed attempt on purpose: a message that crashes its worker every time must
    end as `failed`, not loop forever.
    """
    reply = SmtpReply(None, "worker lost: its lease expired before it reported", stage=Stage.DATA)
    decision = decide(
        reply_class=ReplyClass.TEMPORARY,
        attempts=attempts,
        now=now,
        expires_at=expires_at,
        policy=conf.retry_policy(),
    )
    moved = delivery_transition(
        delivery_id=delivery_id,
        to=decision.status,
        where=Q(status=S.SENDING, attempts=attempts),
        next_attempt_at=decision.next_attempt_at,
        last_code=None,
        last_enhanced_code="",
        last_reply=_reply_text(reply, decision),
    )
    if moved:
        Attempt.objects.filter(
            delivery_id=delivery_id, number=attempts, outcome=Attempt.Outcome.PENDING
        ).update(outcome=Attempt.Outcome.LOST, reply=reply.text)
    return decision
