"""What operators do to mail, from the admin's actions and the management commands: retry,
requeue, cancel, resend. (Which deliveries they mean is read by
``deliveries.selectors.deliveries_select``; purging is ``retention``'s.)

Every status change goes through ``deliveries_transition``, so an operator's move obeys the state
machine exactly as a worker's does, and a row that moved meanwhile is skipped rather than
overwritten. Each service selects only the statuses it may move *from*: a delivered delivery is
never touched by any of them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Client
from deliveries import conf
from deliveries.models import Delivery, Message
from deliveries.publisher import messages_publish
from deliveries.services.accept import AttachmentDraft, MessageDraft, Recipient, messages_accept
from deliveries.services.transitions import deliveries_transition, messages_refresh_status
from deliveries.states import DeliveryStatus

S = DeliveryStatus

#: What each operator action may move a delivery from.
RETRYABLE = (S.DEFERRED, S.FAILED)
CANCELLABLE = (S.SCHEDULED, S.QUEUED, S.DEFERRED)
REQUEUEABLE = (S.QUEUED,)


@dataclass
class OperationResult:
    """How many deliveries an operation was asked about and how many it actually changed."""

    requested: int = 0
    changed: int = 0
    messages: set[UUID] = field(default_factory=set)  # messages with a changed delivery
    published: int = 0  # messages whose delivery task was published after commit

    @property
    def skipped(self) -> int:
        return self.requested - self.changed

    def add(self, other: OperationResult) -> None:
        self.requested += other.requested
        self.changed += other.changed
        self.messages |= other.messages
        self.published += other.published


def chunked(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """``items`` in slices of at most ``size``: the admin and the commands hand an operator
    service one slice per call, so each transaction stays short."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- retry, requeue, cancel ------------------------------------------------------------------


def _publish_after_commit(result: OperationResult, to_publish: dict[UUID, str]) -> None:
    if not to_publish:
        return

    def publish() -> None:
        result.published += messages_publish(messages=to_publish.items())

    # After commit, so a worker never finds the row still in its old status. A lost publish
    # loses nothing: the rows are `queued` and the dispatcher publishes them again.
    transaction.on_commit(publish, robust=True)


def deliveries_retry_now(*, delivery_ids: Collection[int]) -> OperationResult:
    """Send failed and deferred deliveries again now, without waiting for their next attempt.

    A failed delivery's message has usually outlived its lifetime; the message gets a new one
    from now, or the worker would fail the delivery again on claiming it. The attempt counter is
    kept (attempt numbers stay unique), so a delivery that had used up its attempts gets this one
    try: if it is deferred again, the retry policy fails it.
    """
    result = OperationResult(requested=len(delivery_ids))
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            Delivery.objects.filter(id__in=delivery_ids, status__in=RETRYABLE)
            .select_for_update(of=("self",))
            .values_list("id", "message_id", "status", "message__priority")
        )
        failed_messages = {message_id for _, message_id, status, _ in rows if status == S.FAILED}
        if failed_messages:
            Message.objects.filter(
                id__in=failed_messages, expires_at__lt=now + conf.message_lifetime()
            ).update(expires_at=now + conf.message_lifetime())
        # `where` keeps `scheduled -> queued` out: releasing held mail early is not a retry.
        # A cancel the client asked for during an earlier attempt is overruled by the operator.
        result.changed = deliveries_transition(
            delivery_ids=[row[0] for row in rows],
            to=S.QUEUED,
            where=Q(status__in=RETRYABLE),
            next_attempt_at=now + conf.republish_after(),
            cancel_requested=False,
        )
        result.messages = {row[1] for row in rows}
        messages_refresh_status(message_ids=result.messages)
        _publish_after_commit(result, {row[1]: row[3] for row in rows})
    return result


def deliveries_requeue(*, delivery_ids: Collection[int]) -> OperationResult:
    """Publish the tasks of queued deliveries again now (say, after RabbitMQ lost its queues).

    The dispatcher does the same on its own once ``MAILHUB_REPUBLISH_AFTER_SECONDS`` have passed;
    this does not wait. No status changes: a queued delivery already means "a task is due".
    Duplicate tasks are harmless, the claim lets only one of them send.
    """
    result = OperationResult(requested=len(delivery_ids))
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            Delivery.objects.filter(id__in=delivery_ids, status__in=REQUEUEABLE)
            .select_for_update(of=("self",), skip_locked=True)
            .values_list("id", "message_id", "message__priority")
        )
        # Not a status change: only the time the dispatcher would republish it, pushed back.
        result.changed = Delivery.objects.filter(
            id__in=[row[0] for row in rows], status=S.QUEUED
        ).update(next_attempt_at=now + conf.republish_after(), updated_at=now)
        result.messages = {row[1] for row in rows}
        _publish_after_commit(result, {row[1]: row[2] for row in rows})
    return result


def deliveries_cancel(*, delivery_ids: Collection[int], reason: str = "") -> OperationResult:
    """Cancel deliveries not yet sent (scheduled, queued, deferred).

    A delivery being sent right now is left alone: its SMTP transaction may already be done.
    """
    result = OperationResult(requested=len(delivery_ids))
    with transaction.atomic():
        message_ids = set(
            Delivery.objects.filter(id__in=delivery_ids, status__in=CANCELLABLE).values_list(
                "message_id", flat=True
            )
        )
        result.changed = deliveries_transition(
            delivery_ids=delivery_ids,
            to=S.CANCELLED,
            next_attempt_at=None,
            last_reply=reason or "cancelled by an operator",
        )
        messages_refresh_status(message_ids=message_ids)
        result.messages = message_ids
    return result


# -- resend ----------------------------------------------------------------------------------


def messages_resend(*, message_ids: Collection[UUID]) -> list[Message]:
    """Accept a copy of each message as a new message, to all its recipients.

    The original is not changed. The copy has its own id, Message-ID, lifetime and deliveries,
    goes through the suppression list again, names its original in ``metadata["resent_from"]``
    and keeps its mode: a copy of test-mode mail is test-mode mail, settled by the simulator.
    """
    originals = list(
        Message.objects.filter(id__in=list(message_ids))
        .order_by("created_at")
        .prefetch_related("deliveries", "attachments")
    )
    drafts_by: dict[tuple[int, bool], list[MessageDraft]] = defaultdict(list)
    for original in originals:
        drafts_by[original.client_id, original.test_mode].append(_draft_copy_of(original))
    clients = Client.objects.in_bulk([client_id for client_id, _ in drafts_by])
    resent: list[Message] = []
    with transaction.atomic():
        for (client_id, test_mode), drafts in drafts_by.items():
            resent.extend(
                messages_accept(client=clients[client_id], drafts=drafts, test_mode=test_mode)
            )
    return resent


def _draft_copy_of(message: Message) -> MessageDraft:
    deliveries = sorted(message.deliveries.all(), key=lambda d: d.id)
    return MessageDraft(
        sender=message.sender,
        recipients=[Recipient(address=d.address, name=d.name, kind=d.kind) for d in deliveries],
        subject=message.subject,
        text=message.text_body,
        html=message.html_body,
        reply_to=list(message.reply_to),
        headers=dict(message.headers),
        priority=message.priority,
        tags=list(message.tags),
        metadata={**message.metadata, "resent_from": str(message.id)},
        attachments=[
            AttachmentDraft(
                filename=a.filename,
                content_type=a.content_type,
                content=bytes(a.content),
                content_id=a.content_id,
            )
            for a in message.attachments.all()
        ],
        template_name=message.template_name,
        unsubscribe=message.unsubscribe,
    )
