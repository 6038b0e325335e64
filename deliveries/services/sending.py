"""Delivering: claim a batch of messages' queued deliveries, send each message in one SMTP
transaction over the worker's reused connection, record every recipient's outcome."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from uuid import UUID

from django.db import connection, transaction
from django.db.models import Count, F, Q
from django.utils import timezone
from psycopg2.extras import execute_values

from deliveries import conf
from deliveries.bulk import update_from_values
from deliveries.limits import admissible, limit_for
from deliveries.mime import build_mime
from deliveries.models import Attachment, Attempt, Delivery, DomainWindow, Message, Suppression
from deliveries.policy import (
    Decision,
    ReplyClass,
    SmtpReply,
    Stage,
    classify,
    decide,
    is_hard_bounce,
    is_relay_fault,
)
from deliveries.services.accept import suppression_add
from deliveries.services.transitions import (
    Outcome,
    deliveries_settle,
    deliveries_transition,
    delivery_transition,
    messages_refresh_status,
)
from deliveries.smtp import Envelope, Transport
from deliveries.states import DeliveryStatus, MessageStatus

S = DeliveryStatus


@dataclass
class Claim:
    """One message's deliveries that this task now owns, under a lease."""

    message: Message
    claimed: list[Delivery]  # `attempts` already counts this attempt
    recipients: list[Delivery] = field(default_factory=list)  # all of them, for the headers
    attachments: list[Attachment] = field(default_factory=list)
    attempts: dict[int, Attempt] = field(default_factory=dict)  # by delivery id


def deliveries_claim(
    *, message_ids: Sequence[UUID | str], task_id: str, worker: str
) -> list[Claim]:
    """Take the queued deliveries of these messages for this task, one ``Claim`` per message.

    Rows locked by another worker are skipped, so a task published twice sends once. The lease
    (``next_attempt_at`` while sending) tells the dispatcher when to assume this worker died.
    Deliveries of a message past its lifetime are failed here instead of being sent.
    """
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("message")
            .filter(message_id__in=message_ids, status=S.QUEUED)
            .order_by("message_id", "id")
        )
        if not rows:
            return []
        expired = [row for row in rows if row.message.expires_at <= now]
        live = [row for row in rows if row.message.expires_at > now]
        if expired:
            deliveries_transition(
                delivery_ids=[row.id for row in expired],
                to=S.FAILED,
                next_attempt_at=None,
                last_reply="message lifetime exceeded before it could be sent",
            )
            messages_refresh_status(message_ids={row.message_id for row in expired})
        live, held = _admit_by_domain(live, now=now)
        if held:
            # Over its domain's limit: stays queued, published again shortly by the dispatcher,
            # and is not charged an attempt.
            Delivery.objects.filter(id__in=[row.id for row in held]).update(
                next_attempt_at=now + conf.domain_wait()
            )
        if not live:
            return []
        deliveries_transition(
            delivery_ids=[row.id for row in live],
            to=S.SENDING,
            attempts=F("attempts") + 1,
            next_attempt_at=now + conf.lease(),
        )
        claims: dict[UUID, Claim] = {}
        for row in live:
            row.attempts += 1
            row.status = S.SENDING
            claims.setdefault(row.message_id, Claim(message=row.message, claimed=[]))
            claims[row.message_id].claimed.append(row)
        attempts = Attempt.objects.bulk_create(
            Attempt(
                delivery=row,
                number=row.attempts,
                task_id=task_id or "",
                worker=worker or "",
                started_at=now,
            )
            for row in live
        )
        for attempt in attempts:
            claims[attempt.delivery.message_id].attempts[attempt.delivery_id] = attempt
        # A message with a delivery being sent is `sending`, whatever its other deliveries do
        # (see states.message_status_for), so no need to read them.
        Message.objects.filter(id__in=claims).exclude(status=MessageStatus.SENDING).update(
            status=MessageStatus.SENDING
        )
    for recipient in (
        Delivery.objects.filter(message_id__in=claims)
        .only("message_id", "address", "name", "kind")
        .order_by("id")
    ):
        claims[recipient.message_id].recipients.append(recipient)
    for attachment in Attachment.objects.filter(message_id__in=claims).order_by("id"):
        claims[attachment.message_id].attachments.append(attachment)
    return list(claims.values())


_DOMAIN_LOCK_SEED = 0x4D41494C  # any constant, the same in every process
_COUNT_STARTS_SQL = (
    "INSERT INTO deliveries_domainwindow (domain, minute, count) VALUES %s"
    " ON CONFLICT (domain, minute) DO UPDATE"
    " SET count = deliveries_domainwindow.count + EXCLUDED.count"
)


def _admit_by_domain(
    rows: list[Delivery], *, now: datetime
) -> tuple[list[Delivery], list[Delivery]]:
    """Split claimable rows into those their domain's limits admit now and those held back.

    Runs inside the claim transaction. A per-domain advisory lock, held until commit, makes the
    count-then-claim exact across workers: nobody else claims for that domain in between.
    """
    limits, default = conf.domain_limits()
    wanted = Counter(row.domain for row in rows)
    limited = {
        domain: limit
        for domain in wanted
        if not (limit := limit_for(domain, limits=limits, default=default)).unlimited
    }
    if not limited:
        return rows, []
    domains = sorted(limited)
    minute = now.replace(second=0, microsecond=0)
    with connection.cursor() as cursor:
        # Sorted, so two claimers needing the same domains take the locks in the same order.
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(d, %s))"
            " FROM unnest(%s::text[]) AS d ORDER BY d",
            [_DOMAIN_LOCK_SEED, domains],
        )
    # A connection is a task sending to the domain: count the distinct tasks behind the
    # deliveries being sent (their current attempts), found through the partial index.
    connections = dict(
        Attempt.objects.filter(
            delivery__status=S.SENDING,
            delivery__domain__in=domains,
            number=F("delivery__attempts"),
        )
        .values("delivery__domain")
        .annotate(n=Count("task_id", distinct=True))
        .values_list("delivery__domain", "n")
    )
    rated = [domain for domain in domains if limited[domain].per_minute]
    started = dict(
        DomainWindow.objects.filter(domain__in=rated, minute=minute).values_list("domain", "count")
    )
    room = {
        domain: admissible(
            wanted=wanted[domain],
            limit=limited[domain],
            connections=connections.get(domain, 0),
            started_this_minute=started.get(domain, 0),
        )
        for domain in domains
    }
    admitted, held = [], []
    for row in rows:
        if row.domain in room and room[row.domain] <= 0:
            held.append(row)
            continue
        if row.domain in room:
            room[row.domain] -= 1
        admitted.append(row)
    started_now = Counter(row.domain for row in admitted if row.domain in rated)
    if started_now:
        with connection.cursor() as cursor:
            execute_values(
                cursor.cursor,
                _COUNT_STARTS_SQL,
                [(domain, minute, count) for domain, count in started_now.items()],
            )
    return admitted, held


def _reply_text(reply: SmtpReply, decision: Decision) -> str:
    text = str(reply)
    return f"{text}; {decision.reason}" if decision.reason and decision.status == S.FAILED else text


def attempts_record(
    *, claims: Sequence[Claim], replies: Mapping[int, SmtpReply], durations: Mapping[UUID, int]
) -> dict[int, Decision]:
    """Record every claimed delivery's reply and move it on, in one transaction.

    ``replies`` and the result are keyed by delivery id, ``durations`` (ms) by message id. A
    delivery whose lease expired meanwhile was taken back by the dispatcher; its attempt still
    gets the server's reply (so a late success shows up as a likely duplicate), but its status is
    left to whoever owns it now.
    """
    now = timezone.now()
    policy = conf.retry_policy()
    decisions: dict[int, Decision] = {}
    outcomes: list[Outcome] = []
    bounces: list[tuple[int, str, SmtpReply]] = []
    for claim in claims:
        for delivery in claim.claimed:
            reply = replies[delivery.id]
            relay_fault = is_relay_fault(reply)
            relay_failures = delivery.relay_failures + relay_fault
            decision = decide(
                reply_class=classify(reply),
                attempts=delivery.attempts - relay_failures,
                now=now,
                expires_at=claim.message.expires_at,
                policy=policy,
                relay_fault=relay_fault,
            )
            decisions[delivery.id] = decision
            outcomes.append(
                Outcome(
                    delivery_id=delivery.id,
                    message_id=claim.message.id,
                    client_id=claim.message.client_id,
                    address=delivery.address,
                    attempts=delivery.attempts,
                    relay_failures=relay_failures,
                    decision=decision,
                    reply=reply,
                    reply_text=_reply_text(reply, decision),
                )
            )
            if decision.status == S.BOUNCED and is_hard_bounce(reply):
                bounces.append((claim.message.client_id, delivery.address, reply))
            attempt = claim.attempts[delivery.id]
            attempt.outcome = Attempt.Outcome(decision.status.value)
            attempt.smtp_code = reply.code
            attempt.enhanced_code = reply.enhanced_code
            attempt.reply = reply.text
            attempt.relay = reply.relay
            attempt.duration_ms = durations.get(claim.message.id)
    with transaction.atomic():
        deliveries_settle(outcomes=outcomes)
        for client_id, address, reply in bounces:
            suppression_add(
                client_id=client_id,
                address=address,
                reason=Suppression.Reason.HARD_BOUNCE,
                detail=str(reply),
            )
        update_from_values(
            model=Attempt,
            columns={
                "outcome": "varchar",
                "smtp_code": "smallint",
                "enhanced_code": "varchar",
                "reply": "text",
                "relay": "varchar",
                "duration_ms": "integer",
            },
            rows=[
                (a.id, a.outcome, a.smtp_code, a.enhanced_code, a.reply, a.relay, a.duration_ms)
                for claim in claims
                for a in claim.attempts.values()
            ],
        )
        messages_refresh_status(message_ids=[claim.message.id for claim in claims])
    return decisions


def deliveries_send(
    *, message_ids: Sequence[UUID | str], task_id: str, worker: str, transport: Transport
) -> dict[int, Decision]:
    """Claim these messages' queued deliveries, send each message, record all outcomes.

    Safe to run twice: a second run finds nothing to claim. SMTP is never spoken inside a
    database transaction. When the relay cannot be reached for one message, the rest of the batch
    is deferred with the same reply instead of waiting out the same timeouts again.
    """
    claims = deliveries_claim(message_ids=message_ids, task_id=task_id, worker=worker)
    if not claims:
        return {}
    # The transport stops a little before the lease ends (every SMTP command is bounded by what
    # is left), so the dispatcher never takes back a delivery whose attempt is still running.
    lease = conf.lease().total_seconds()
    deadline = time.monotonic() + lease - min(10.0, lease / 10)
    replies: dict[int, SmtpReply] = {}
    durations: dict[UUID, int] = {}
    relay_failure: SmtpReply | None = None
    for claim in claims:
        if relay_failure is not None:
            replies.update({delivery.id: relay_failure for delivery in claim.claimed})
            continue
        message_started = time.monotonic()
        by_address = transport.send(_envelope(claim), deadline=deadline)
        durations[claim.message.id] = int((time.monotonic() - message_started) * 1000)
        message_replies = {d.id: by_address[d.address] for d in claim.claimed}
        replies.update(message_replies)
        if all(is_relay_fault(reply) for reply in message_replies.values()):
            relay_failure = next(iter(message_replies.values()))
    return attempts_record(claims=claims, replies=replies, durations=durations)


def _envelope(claim: Claim) -> Envelope:
    return Envelope(
        sender=parseaddr(claim.message.sender)[1],
        recipients=[delivery.address for delivery in claim.claimed],
        content=build_mime(claim.message, claim.recipients, claim.attachments),
    )


def delivery_mark_lost(
    *, delivery_id: int, attempts: int, expires_at: datetime, now: datetime
) -> Decision:
    """Settle a delivery whose worker's lease expired: the attempt is lost, the delivery retried.

    Counted as a failed attempt on purpose: a message that crashes its worker every time must
    end as `failed`, not loop forever.
    """
    reply = SmtpReply(None, "worker lost: its lease expired before it reported", Stage.DATA)
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
