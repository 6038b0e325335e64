"""Writes: accepting mail, the delivery state machine, claiming and recording attempts."""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from api.models import Client
from deliveries import conf
from deliveries.mime import build_mime, make_message_id
from deliveries.models import Attempt, Delivery, Message
from deliveries.policy import Decision, ReplyClass, SmtpReply, Stage, classify, decide
from deliveries.publisher import messages_publish
from deliveries.smtp import Envelope, Transport
from deliveries.states import DeliveryStatus, MessageStatus, message_status_for, sources_of

logger = logging.getLogger(__name__)
S = DeliveryStatus


# -- the state machine's only writer ---------------------------------------------------------


def deliveries_transition(
    *, delivery_ids: Collection[int], to: DeliveryStatus, where: Q | None = None, **fields: Any
) -> int:
    """Move deliveries to ``to`` from any status allowed to reach it; return how many moved.

    The conditional UPDATE is also the claim: a row another process already moved is skipped,
    so callers compare the count with what they asked for instead of reading first.
    """
    if "status" in fields:
        raise TypeError("pass the new status as `to`")
    queryset = Delivery.objects.filter(id__in=delivery_ids, status__in=sources_of(to))
    if where is not None:
        queryset = queryset.filter(where)
    return queryset.update(status=to, updated_at=timezone.now(), **fields)


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


def message_accept(
    *,
    client: Client,
    sender: str,
    recipients: Sequence[Recipient],
    subject: str = "",
    text: str = "",
    html: str = "",
    reply_to: Sequence[str] = (),
    headers: Mapping[str, str] | None = None,
    priority: str = "normal",
) -> Message:
    """Store a message and one delivery per distinct recipient, then publish it after commit.

    Input must already be validated (``api.serializers``). A recipient named twice (say in To and
    Bcc) gets one delivery, under the first kind it was named with.
    """
    now = timezone.now()
    message_uuid = uuid.uuid4()
    message = Message(
        id=message_uuid,
        client=client,
        sender=sender,
        reply_to=list(reply_to),
        subject=subject,
        text_body=text,
        html_body=html,
        headers=dict(headers or {}),
        priority=priority,
        status=MessageStatus.QUEUED,
        message_id=make_message_id(unique=message_uuid.hex, sender_address=parseaddr(sender)[1]),
        created_at=now,
        expires_at=now + conf.message_lifetime(),
    )
    seen: set[str] = set()
    deliveries = []
    for recipient in recipients:
        key = recipient.address.lower()
        if key in seen:
            continue
        seen.add(key)
        deliveries.append(
            Delivery(
                message=message,
                address=recipient.address,
                name=recipient.name,
                kind=recipient.kind,
                status=S.QUEUED,
                next_attempt_at=now + conf.republish_after(),
                updated_at=now,
            )
        )
    with transaction.atomic():
        message.save(force_insert=True)
        Delivery.objects.bulk_create(deliveries)
        # After commit, so a worker never looks for a row that is not there yet. If the publish
        # fails the row stays `queued` and the dispatcher publishes it later.
        transaction.on_commit(
            lambda: messages_publish(messages=[(message.id, message.priority)]), robust=True
        )
    return message


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
    content = build_mime(claim.message, claim.recipients)
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
