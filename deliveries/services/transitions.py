"""Moving deliveries through the state machine (``deliveries.states``): its three writers
(``deliveries_transition``, ``deliveries_start``, ``deliveries_settle``) with the events they
emit, the message roll-up, and cancelling (at once, or after the attempt under way)."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from psycopg2.extras import execute_values

from accounts.models import Client
from deliveries.models import Delivery, Event, Message
from deliveries.policy import Decision, SmtpReply
from deliveries.states import (
    EVENT_OF_STATUS,
    DeliveryStatus,
    check_transition,
    message_status_sql,
    sources_of,
)

S = DeliveryStatus

#: What an event is made from, read off each delivery row it is about (``events_of``).
EVENT_SOURCE_COLUMNS = (
    "id",
    "message_id",
    "message__client_id",
    "address",
    "attempts",
    "message__test_mode",
)


def events_of(
    rows: Iterable[tuple[Any, ...]],
    *,
    type: str,
    now: datetime,
    smtp_code: int | None = None,
    enhanced_code: str = "",
    reply: str = "",
    next_attempt_at: datetime | None = None,
) -> list[Event]:
    """One unsaved ``Event`` of ``type`` for each row of ``EVENT_SOURCE_COLUMNS``."""
    return [
        Event(
            client_id=client_id,
            message_id=message_id,
            delivery_id=delivery_id,
            type=type,
            recipient=address,
            attempt=attempts,
            smtp_code=smtp_code,
            enhanced_code=enhanced_code,
            reply=reply,
            next_attempt_at=next_attempt_at,
            created_at=now,
            test_mode=test_mode,
        )
        for delivery_id, message_id, client_id, address, attempts, test_mode in rows
    ]


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
    event_type = EVENT_OF_STATUS[to]
    if event_type is None:
        return queryset.update(status=to, updated_at=now, **fields)
    with transaction.atomic():
        # Lock, then update exactly the locked rows: the events then name the rows that moved.
        rows = list(queryset.select_for_update(of=("self",)).values_list(*EVENT_SOURCE_COLUMNS))
        if not rows:
            return 0
        Delivery.objects.filter(id__in=[row[0] for row in rows]).update(
            status=to, updated_at=now, **fields
        )
        Event.objects.bulk_create(
            events_of(
                rows,
                type=event_type,
                now=now,
                smtp_code=fields.get("last_code"),
                enhanced_code=fields.get("last_enhanced_code", ""),
                reply=fields.get("last_reply", ""),
                next_attempt_at=fields.get("next_attempt_at"),
            )
        )
    return len(rows)


def delivery_transition(
    *, delivery_id: int, to: DeliveryStatus, where: Q | None = None, **fields: Any
) -> bool:
    return deliveries_transition(delivery_ids=[delivery_id], to=to, where=where, **fields) == 1


# Statements below are raw SQL: on a worker they run for every task, and building them with the
# ORM cost more CPU than running them.
#
# Where such a statement finds its rows by key and also checks their status, the check is written
# `status || '' = ...`: the same test, which the planner cannot match with the partial indexes on
# status (`delivery_due`, `delivery_sending_domain`). Written plainly, with statistics that still
# said no row was active (a burst after a quiet spell, before autovacuum's next ANALYZE), it
# chose `delivery_due` and read the whole backlog for every task: measured 3-6 ms per statement
# at a backlog of 7,000, growing with it, against 0.2-1.6 ms by the key whatever the statistics.

# A message with a delivery being sent is `sending` whatever its other deliveries do (see
# states.message_status_for), so the claim sets it without reading them.
_START_SQL = """
WITH moved AS (
    UPDATE deliveries_delivery
    SET status = 'sending', attempts = attempts + 1, next_attempt_at = %(lease_until)s,
        updated_at = %(now)s
    WHERE id = ANY(%(ids)s) AND status || '' = ANY(%(sources)s)
    RETURNING message_id
), rolled_up AS (
    UPDATE deliveries_message SET status = 'sending'
    WHERE id IN (SELECT message_id FROM moved) AND status <> 'sending'
)
SELECT count(*) FROM moved
"""


def deliveries_start(*, delivery_ids: Collection[int], lease_until: datetime) -> int:
    """Move claimed deliveries to `sending`, counting the attempt, under a lease until
    ``lease_until``, and their messages with them; return how many moved.

    The caller holds the rows' locks (its claim). The move to `sending` emits no event.
    """
    if not delivery_ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            _START_SQL,
            {
                "ids": list(delivery_ids),
                "sources": [status.value for status in sources_of(S.SENDING)],
                "lease_until": lease_until,
                "now": timezone.now(),
            },
        )
        started: int = cursor.fetchone()[0]
        return started


_LOCK_MESSAGES_SQL = (
    "SELECT 1 FROM deliveries_message WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE"
)
# One message's deliveries at a time (LATERAL), for the reason given at sending._CLAIM_SQL; the
# HAVING keeps a message without deliveries (there are none) from rolling up to the rule's ELSE.
_REFRESH_SQL = f"""
UPDATE deliveries_message m SET status = r.status
FROM unnest(%s::uuid[]) AS wanted(id)
CROSS JOIN LATERAL (
    SELECT {message_status_sql("status")} AS status
    FROM deliveries_delivery WHERE message_id = wanted.id HAVING count(*) > 0
) r
WHERE m.id = wanted.id AND m.status <> r.status
"""  # noqa: S608 (the rule's SQL is built from code, never from input)


def messages_refresh_status(*, message_ids: Iterable[UUID]) -> None:
    """Recompute each message's status from its deliveries, in the caller's transaction.

    The message rows are locked first (in id order, so two callers cannot deadlock) and the
    statuses read by a later statement, which sees every change committed before ours: read in
    the locking statement, they would be as of its start, before it waited for a lock.
    """
    ids = [str(message_id) for message_id in set(message_ids)]
    if not ids:
        return
    # No savepoint: inside the caller's transaction this costs nothing; outside one it makes one.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(_LOCK_MESSAGES_SQL, [ids])
        cursor.execute(_REFRESH_SQL, [ids])


@dataclass(frozen=True)
class Outcome:
    """How one claimed delivery's attempt ended, as the worker that claimed it reports it."""

    delivery_id: int
    message_id: UUID
    client_id: int
    test_mode: bool  # the message's, copied onto the event
    address: str
    attempts: int  # the attempt number the worker claimed: a fencing token
    relay_failures: int  # the delivery's count after this attempt
    decision: Decision
    reply: SmtpReply
    reply_text: str
    relay_message_id: str = ""  # the relay's id of the message, when it delivered and gave one


# `attempts = v.attempts` sets nothing new: it is the fencing condition. The events are written
# by the same statement, for exactly the rows it moved; already fanned out when their client has
# no webhook endpoint to tell (`Client.wants_events`).
_SETTLE_SQL = f"""
WITH v (id, attempts, relay_failures, status, next_attempt_at, last_code, last_enhanced_code,
        last_reply, delivered_at, updated_at, client_id, event_type, test_mode,
        relay_message_id) AS (VALUES %s),
moved AS (
    UPDATE deliveries_delivery t
    SET relay_failures = v.relay_failures, status = v.status,
        next_attempt_at = v.next_attempt_at, last_code = v.last_code,
        last_enhanced_code = v.last_enhanced_code, last_reply = v.last_reply,
        delivered_at = v.delivered_at, updated_at = v.updated_at,
        relay_message_id = v.relay_message_id
    FROM v
    WHERE t.id = v.id AND t.status || '' = 'sending' AND t.attempts = v.attempts
    RETURNING t.id, t.message_id, t.address
)
INSERT INTO deliveries_event (id, client_id, message_id, delivery_id, type, recipient, attempt,
    smtp_code, enhanced_code, reply, next_attempt_at, created_at, fanned_out, test_mode)
SELECT gen_random_uuid(), v.client_id, moved.message_id, moved.id, v.event_type, moved.address,
    v.attempts, v.last_code, v.last_enhanced_code, v.last_reply, v.next_attempt_at,
    v.updated_at, NOT c.wants_events, v.test_mode
FROM moved JOIN v ON v.id = moved.id JOIN {Client._meta.db_table} c ON c.id = v.client_id
RETURNING delivery_id
"""  # noqa: S608 - built from constants only
_SETTLE_VALUES = (
    "(%s::bigint, %s::integer, %s::integer, %s::varchar, %s::timestamptz, %s::smallint,"
    " %s::varchar, %s::text, %s::timestamptz, %s::timestamptz, %s::integer, %s::varchar,"
    " %s::boolean, %s::varchar)"
)


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
            o.client_id,
            EVENT_OF_STATUS[o.decision.status],
            o.test_mode,
            o.relay_message_id,
        )
        for o in outcomes
    ]
    with connection.cursor() as cursor:
        moved = execute_values(
            cursor.cursor,
            _SETTLE_SQL,
            rows,
            template=_SETTLE_VALUES,
            page_size=len(rows),
            fetch=True,
        )
    return {delivery_id for (delivery_id,) in moved}


# -- cancelling ----------------------------------------------------------------------------------

CANCELLED_BY_CLIENT = "cancelled at the client's request"
CANCELLED_AFTER_ATTEMPT = (
    "cancelled at the client's request, made while an attempt was under way; that attempt did "
    "not deliver it"
)


def deliveries_cancel_if_requested(*, delivery_ids: Collection[int]) -> int:
    """Cancel those of these just-deferred deliveries whose cancel was requested while their
    attempt ran (see ``message_cancel``); return how many.

    Run in the transaction that recorded the attempt, after its statement moved the rows: a
    request committed before then is read here; one made after finds the rows `deferred` and
    cancels them itself. The delivery shows both moves: `deferred` (what the attempt did), then
    `cancelled`.
    """
    if not delivery_ids:
        return 0
    return deliveries_transition(
        delivery_ids=delivery_ids,
        to=S.CANCELLED,
        where=Q(status=S.DEFERRED, cancel_requested=True),
        next_attempt_at=None,
        last_reply=CANCELLED_AFTER_ATTEMPT,
    )


@dataclass(frozen=True)
class Cancellation:
    """What a cancel did, by recipient address."""

    cancelled: list[str]  # were waiting (scheduled, queued, deferred): cancelled now
    # Were being sent: cancelled when that attempt ends, unless it delivers, bounces or fails them.
    requested: list[str]


# SKIP LOCKED: a `sending` row locked by someone else is being recorded (or taken back by the
# dispatcher) right now. Waiting for it could deadlock with that transaction, which locks a
# task's rows in no particular order; the next round finds it moved on instead.
_REQUEST_CANCEL_SQL = """
UPDATE deliveries_delivery SET cancel_requested = true
WHERE id IN (
    SELECT id FROM deliveries_delivery
    WHERE message_id = %s AND status = 'sending' AND NOT cancel_requested
    FOR UPDATE SKIP LOCKED
)
RETURNING id
"""
_CANCEL_ROUNDS = 20
_CANCEL_ROUND_PAUSE = 0.05


def message_cancel(*, message: Message) -> Cancellation:
    """Cancel every delivery of the message not yet sent; a delivery being sent right now is
    cancelled after its attempt, unless that attempt delivers, bounces or fails it (its SMTP
    transaction may already be done: what happened stands).

    Each round, in one transaction: flag the deliveries being sent, cancel the waiting ones, roll
    the message up. A row that moved meanwhile (claimed by a worker, or recorded while it was
    locked) is caught by the next round; the rounds end when no delivery is being sent unflagged.
    Safe to repeat: a second cancel lists nothing.
    """
    cancelled: list[int] = []
    requested: set[int] = set()
    for _ in range(_CANCEL_ROUNDS):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(_REQUEST_CANCEL_SQL, [str(message.id)])
                requested.update(delivery_id for (delivery_id,) in cursor.fetchall())
            waiting = list(
                Delivery.objects.filter(
                    message_id=message.id, status__in=sources_of(S.CANCELLED)
                ).values_list("id", flat=True)
            )
            if deliveries_transition(
                delivery_ids=waiting,
                to=S.CANCELLED,
                next_attempt_at=None,
                last_reply=CANCELLED_BY_CLIENT,
            ):
                cancelled += Delivery.objects.filter(
                    id__in=waiting, status=S.CANCELLED
                ).values_list("id", flat=True)
                messages_refresh_status(message_ids=[message.id])
        if not Delivery.objects.filter(
            message_id=message.id, status=S.SENDING, cancel_requested=False
        ).exists():
            break
        time.sleep(_CANCEL_ROUND_PAUSE)
    addresses = dict(
        Delivery.objects.filter(id__in=[*cancelled, *requested]).values_list("id", "address")
    )
    return Cancellation(
        cancelled=[addresses[i] for i in sorted(cancelled)],
        requested=[addresses[i] for i in sorted(requested - set(cancelled))],
    )
