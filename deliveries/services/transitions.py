"""The delivery state machine's only writer, the events it emits, and the message roll-up."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from deliveries.bulk import update_from_values
from deliveries.models import Delivery, Event, Message
from deliveries.policy import Decision, SmtpReply
from deliveries.states import DeliveryStatus, check_transition, message_status_for, sources_of

S = DeliveryStatus

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


@dataclass(frozen=True)
class Outcome:
    """How one claimed delivery's attempt ended, as the worker that claimed it reports it."""

    delivery_id: int
    message_id: UUID
    client_id: int
    address: str
    attempts: int  # the attempt number the worker claimed: a fencing token
    relay_failures: int  # the delivery's count after this attempt
    decision: Decision
    reply: SmtpReply
    reply_text: str


def deliveries_settle(*, outcomes: Sequence[Outcome]) -> set[int]:
    """Move deliveries from `sending` to their outcomes in ONE statement, with their events.

    Only rows still `sending` under the claimed attempt number move: a delivery whose lease
    expired was taken back by the dispatcher and belongs to someone else now. Returns the ids
    that moved. Raw SQL because the ORM cannot update many rows to different values and say
    which rows it updated; this is the bulk form of ``deliveries_transition``.
    """
    if not outcomes:
        return set()
    for outcome in outcomes:
        check_transition(S.SENDING, outcome.decision.status)
    now = timezone.now()
    rows = [
        (
            o.delivery_id,
            o.attempts,
            o.relay_failures,
            o.decision.status.value,
            o.decision.next_attempt_at,
            o.reply.code,
            o.reply.enhanced_code,
            o.reply_text,
            now if o.decision.status == S.DELIVERED else None,
            now,
        )
        for o in outcomes
    ]
    with transaction.atomic():
        moved = {
            row[0]
            for row in update_from_values(
                model=Delivery,
                columns={
                    "attempts": "integer",
                    "relay_failures": "integer",
                    "status": "varchar",
                    "next_attempt_at": "timestamptz",
                    "last_code": "smallint",
                    "last_enhanced_code": "varchar",
                    "last_reply": "text",
                    "delivered_at": "timestamptz",
                    "updated_at": "timestamptz",
                },
                rows=rows,
                # `attempts = v.attempts` sets nothing new: it is the fencing condition.
                condition="t.status = 'sending' AND t.attempts = v.attempts",
                returning="t.id",
            )
        }
        Event.objects.bulk_create(
            Event(
                client_id=o.client_id,
                message_id=o.message_id,
                delivery_id=o.delivery_id,
                type=EVENT_FOR_STATUS[o.decision.status],
                recipient=o.address,
                attempt=o.attempts,
                smtp_code=o.reply.code,
                enhanced_code=o.reply.enhanced_code,
                reply=o.reply_text,
                next_attempt_at=o.decision.next_attempt_at,
                created_at=now,
            )
            for o in outcomes
            if o.delivery_id in moved
        )
    return moved
