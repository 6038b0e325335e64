"""Delivering: claim a batch of messages' queued deliveries, send each message in one SMTP
transaction (one per delivery with VERP envelope senders) over the worker's reused connection,
record every recipient's outcome.

Test-mode mail (``Message.test_mode``) takes the same path with one difference: its envelope
goes to a ``simulator.Simulator`` instead of the transport, chosen per message, so a task of
test mail alone never opens a connection, and a task that holds both kinds sends the live mail
as it would have anyway. The simulator's replies are recorded like a relay's.

Each message fails alone: one that cannot be built or addressed is failed with the reason, one
whose sending raises is retried later, and the rest of the task goes on. Whatever else goes wrong,
what the task claimed is settled before it ends, so nothing waits out a lease (or holds its
domain's connection slot) for a fault that is not the database's.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from typing import Any
from uuid import UUID

from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from psycopg2.extras import execute_values

from deliveries import conf, simulator
from deliveries.bulk import update_from_values
from deliveries.limits import admissible, limit_for
from deliveries.mime import build_mime
from deliveries.models import Attachment, Attempt, Delivery, Message, Suppression
from deliveries.parcels import parcels, wants_unsubscribe
from deliveries.partitions import since
from deliveries.policy import (
    Decision,
    SmtpReply,
    Stage,
    classify,
    decide,
    decide_lost,
    is_hard_bounce,
    is_relay_fault,
)
from deliveries.relay_ids import relay_message_id
from deliveries.services.complaints import deliveries_complain
from deliveries.services.suppressions import suppression_add
from deliveries.services.transitions import (
    Outcome,
    deliveries_cancel_if_requested,
    deliveries_settle,
    deliveries_start,
    deliveries_transition,
    delivery_transition,
    messages_refresh_status,
)
from deliveries.smtp import Envelope, Transport
from deliveries.states import ATTEMPT_OUTCOME_OF_STATUS, AttemptOutcome, DeliveryStatus
from domains.signing import Signer, from_domain, signers_for
from mailhub.logs import log_context

logger = logging.getLogger(__name__)

S = DeliveryStatus


@dataclass
class Claim:
    """One message's deliveries that this task now owns, under a lease."""

    message: Message
    claimed: list[Delivery]  # `attempts` already counts this attempt
    started_at: datetime  # when its attempts started (at the claim): finds their partition
    recipients: list[Delivery] = field(default_factory=list)  # all of them, for the headers
    attachments: list[Attachment] = field(default_factory=list)
    attempt_ids: dict[int, int] = field(default_factory=dict)  # by delivery id


# Raw SQL here and below: building these statements with the ORM cost more CPU than the rest of
# a one-message task. A message's deliveries and attachments never change after accept, so
# `total` and the EXISTS tell whether the rows claimed are all its recipients and whether it has
# attachments, without reading either.
_DELIVERY_COLUMNS = ("id", "address", "domain", "name", "kind", "attempts", "relay_failures")
_MESSAGE_COLUMNS = (
    "id",
    "client_id",
    "sender",
    "reply_to",
    "subject",
    "text_body",
    "html_body",
    "headers",
    "message_id",
    "created_at",
    "expires_at",
    "test_mode",
    "priority",
    "unsubscribe",
)
# Identifiers come from code; the ids travel as a parameter.
#
# The plan must read a task's rows by key whatever the planner's statistics say (none at all on
# a new database, or on a server without autovacuum; stale ones after a burst). `message_id =
# ANY(ids)` lets it guess that ids match half the table and scan all of it: measured 27 ms per
# claim of 50 messages at 80,000 deliveries, growing with the table. So each message's rows are
# looked up one message at a time (LATERAL, with OFFSET 0 so that the planner cannot fold the
# lookup back into a join), and the claimed rows are then locked by primary key. `status || ''`:
# see deliveries.services.transitions.
_CLAIM_SQL = f"""
SELECT {", ".join(f"d.{column}" for column in _DELIVERY_COLUMNS)},
       {", ".join(f"m.{column}" for column in _MESSAGE_COLUMNS)}, n.total,
       EXISTS (SELECT 1 FROM deliveries_attachment a WHERE a.message_id = m.id)
FROM deliveries_delivery d
JOIN deliveries_message m ON m.id = d.message_id
CROSS JOIN LATERAL (
    SELECT count(*) AS total FROM deliveries_delivery c WHERE c.message_id = d.message_id
) n
WHERE d.id = ANY(ARRAY(
    SELECT x.id FROM unnest(%(ids)s::uuid[]) AS wanted(id)
    CROSS JOIN LATERAL (
        SELECT id FROM deliveries_delivery WHERE message_id = wanted.id OFFSET 0
    ) x
)) AND d.status || '' = 'queued'
ORDER BY d.message_id, d.id
FOR UPDATE OF d SKIP LOCKED
"""  # noqa: S608
_INSERT_ATTEMPTS_SQL = (
    "INSERT INTO deliveries_attempt"
    " (delivery_id, number, task_id, worker, relay, started_at, enhanced_code, reply, outcome)"
    " VALUES %s RETURNING delivery_id, id"
)
_RECIPIENTS_SQL = """
SELECT d.message_id, d.address, d.name, d.kind FROM unnest(%s::uuid[]) AS wanted(id)
CROSS JOIN LATERAL (
    SELECT message_id, address, name, kind, id FROM deliveries_delivery
    WHERE message_id = wanted.id OFFSET 0
) d
ORDER BY d.id
"""


@dataclass
class _Claimable:
    """The queued deliveries of one message locked by the claim, and what they say about it."""

    message: Message
    deliveries: list[Delivery]
    total: int  # deliveries of the message, in any status
    has_attachments: bool


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
        claimable = _lock_queued(message_ids=message_ids)
        if not claimable:
            return []
        expired = [d for c in claimable if c.message.expires_at <= now for d in c.deliveries]
        if expired:
            deliveries_transition(
                delivery_ids=[delivery.id for delivery in expired],
                to=S.FAILED,
                next_attempt_at=None,
                last_reply="message lifetime exceeded before it could be sent",
            )
            messages_refresh_status(message_ids={delivery.message_id for delivery in expired})
        unexpired = [d for c in claimable if c.message.expires_at > now for d in c.deliveries]
        # Per-domain limits spare the destination's servers; test mail never reaches them, so it
        # neither waits for nor uses up a domain's room.
        admitted, held = _admit_by_domain(
            [d for d in unexpired if not d.message.test_mode], now=now
        )
        admitted_ids = {delivery.id for delivery in admitted}
        taken = [d for d in unexpired if d.message.test_mode or d.id in admitted_ids]
        if held:
            # Over its domain's limit: stays queued, published again shortly by the dispatcher,
            # and is not charged an attempt.
            Delivery.objects.filter(id__in=[row.id for row in held]).update(
                next_attempt_at=now + conf.domain_wait()
            )
        if not taken:
            return []
        deliveries_start(
            delivery_ids=[delivery.id for delivery in taken], lease_until=now + conf.lease()
        )
        claims: dict[UUID, Claim] = {}
        for delivery in taken:
            delivery.attempts += 1
            delivery.status = S.SENDING
            claims.setdefault(
                delivery.message_id, Claim(delivery.message, claimed=[], started_at=now)
            )
            claims[delivery.message_id].claimed.append(delivery)
        _attempts_start(claims=claims.values(), task_id=task_id, worker=worker, now=now)
    _read_recipients_and_attachments(claims=claims, claimable={c.message.id: c for c in claimable})
    return list(claims.values())


def _lock_queued(*, message_ids: Sequence[UUID | str]) -> list[_Claimable]:
    claimable: dict[UUID, _Claimable] = {}
    split = len(_DELIVERY_COLUMNS)
    message_end = split + len(_MESSAGE_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, {"ids": [str(message_id) for message_id in message_ids]})
        for row in cursor.fetchall():
            message_id = row[split]
            if message_id not in claimable:
                total, has_attachments = row[message_end:]
                claimable[message_id] = _Claimable(
                    message=_message_from_row(row[split:message_end]),
                    deliveries=[],
                    total=total,
                    has_attachments=has_attachments,
                )
            message = claimable[message_id].message
            fields = dict(zip(_DELIVERY_COLUMNS, row[:split], strict=True))
            delivery = Delivery(message=message, status=S.QUEUED, **fields)
            claimable[message_id].deliveries.append(delivery)
    return list(claimable.values())


def _message_from_row(row: Sequence[Any]) -> Message:
    fields = dict(zip(_MESSAGE_COLUMNS, row, strict=True))
    # Django's connection hands jsonb over undecoded; its JSONField decodes it, raw SQL here.
    fields["reply_to"] = json.loads(fields["reply_to"])
    fields["headers"] = json.loads(fields["headers"])
    return Message(**fields)


def _attempts_start(*, claims: Iterable[Claim], task_id: str, worker: str, now: datetime) -> None:
    """Write each claimed delivery's `pending` attempt, before any SMTP is spoken."""
    claims = list(claims)
    rows = [
        (
            d.id,
            d.attempts,
            task_id or "",
            worker or "",
            "",
            now,
            "",
            "",
            AttemptOutcome.PENDING.value,
        )
        for claim in claims
        for d in claim.claimed
    ]
    claim_of = {d.id: claim for claim in claims for d in claim.claimed}
    with connection.cursor() as cursor:
        for delivery_id, attempt_id in execute_values(
            cursor.cursor, _INSERT_ATTEMPTS_SQL, rows, fetch=True
        ):
            claim_of[delivery_id].attempt_ids[delivery_id] = attempt_id


def _read_recipients_and_attachments(
    *, claims: dict[UUID, Claim], claimable: dict[UUID, _Claimable]
) -> None:
    """Fill in what the headers and body need beyond the claimed rows, reading only what is
    missing: when every delivery of a message was locked by the claim, those are its recipients.
    """
    missing = []
    for message_id, claim in claims.items():
        locked = claimable[message_id]
        if len(locked.deliveries) == locked.total:
            claim.recipients = list(locked.deliveries)
        else:
            missing.append(str(message_id))
    if missing:
        with connection.cursor() as cursor:
            cursor.execute(_RECIPIENTS_SQL, [missing])
            for message_id, address, name, kind in cursor.fetchall():
                claims[message_id].recipients.append(
                    Delivery(message_id=message_id, address=address, name=name, kind=kind)
                )
    with_attachments = [m for m in claims if claimable[m].has_attachments]
    if with_attachments:
        for attachment in Attachment.objects.filter(message_id__in=with_attachments).order_by("id"):
            claims[attachment.message_id].attachments.append(attachment)


_DOMAIN_LOCK_SEED = 0x4D41494C  # any constant, the same in every process
_COUNT_STARTS_SQL = (
    "INSERT INTO deliveries_domainwindow (domain, minute, count) VALUES %s"
    " ON CONFLICT (domain, minute) DO UPDATE"
    " SET count = deliveries_domainwindow.count + EXCLUDED.count"
)
# Read after the locks are held (a statement sees what was committed when it started). A
# connection is a task sending to the domain: the distinct tasks behind the deliveries being
# sent (their current attempts), found through the partial index `delivery_sending_domain`.
# Those attempts started within a lease (one whose lease ran out is no connection any more, and
# the dispatcher takes it back): `since` bounds them so, and only the last day's partitions
# are read.
_DOMAIN_COUNTS_SQL = """
SELECT wanted.domain,
       (SELECT count(DISTINCT a.task_id) FROM deliveries_delivery d
        JOIN deliveries_attempt a ON a.delivery_id = d.id AND a.number = d.attempts
        WHERE d.status = 'sending' AND d.domain = wanted.domain
              AND a.started_at >= %(since)s),
       COALESCE((SELECT w.count FROM deliveries_domainwindow w
                 WHERE w.domain = wanted.domain AND w.minute = %(minute)s), 0)
FROM unnest(%(domains)s::text[]) AS wanted(domain)
"""


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
        cursor.execute(
            _DOMAIN_COUNTS_SQL,
            {"domains": domains, "minute": minute, "since": since(now - conf.lease())},
        )
        counts = {domain: (connections, started) for domain, connections, started in cursor}
    room = {
        domain: admissible(
            wanted=wanted[domain],
            limit=limited[domain],
            connections=counts[domain][0],
            started_this_minute=counts[domain][1],
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
    started_now = Counter(
        row.domain for row in admitted if row.domain in limited and limited[row.domain].per_minute
    )
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


def _relay_id(reply: SmtpReply, decision: Decision, known: dict[str, str]) -> str:
    """The relay's message id in a delivering reply to DATA, read once per distinct reply
    text."""
    if decision.status != S.DELIVERED or reply.stage is not Stage.DATA:
        return ""
    relay_id = known.get(reply.text)
    if relay_id is None:
        relay_id = known[reply.text] = relay_message_id(reply.text)
    return relay_id


def attempts_record(
    *,
    claims: Sequence[Claim],
    replies: Mapping[int, SmtpReply],
    durations: Mapping[UUID, int],
    unsendable: Mapping[int, str] | None = None,
) -> dict[int, Decision]:
    """Record every claimed delivery's reply and move it on, in one transaction.

    ``replies``, ``unsendable`` and the result are keyed by delivery id, ``durations`` (ms) by
    message id. ``unsendable`` holds, instead of a reply, why a delivery was not sent at all (its
    message cannot be built or addressed): it is failed with that reason, its address is not
    suppressed (nothing is known against it). A delivery whose lease expired meanwhile was taken
    back by the dispatcher; its attempt still gets the server's reply (so a late success shows up
    as a likely duplicate), but its status is left to whoever owns it now. A retry of a delivery
    whose cancel was requested during the attempt becomes a cancel. A test-mode delivery to the
    simulator's ``complaint@`` that is delivered gets its complaint recorded too.
    """
    now = timezone.now()
    policy = conf.retry_policy()
    unsendable = unsendable or {}
    decisions: dict[int, Decision] = {}
    outcomes: list[Outcome] = []
    attempt_rows: list[tuple[Any, ...]] = []
    bounces: list[tuple[int, str, SmtpReply]] = []
    complaints: list[int] = []
    relay_ids: dict[str, str] = {}  # by reply text: a transaction's recipients share one reply
    for claim in claims:
        for delivery in claim.claimed:
            reason = unsendable.get(delivery.id)
            if reason is not None:
                reply = SmtpReply(None, reason, Stage.DATA)
                relay_failures = delivery.relay_failures
                decision = Decision(S.FAILED, reason=reason)
            else:
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
                    test_mode=claim.message.test_mode,
                    address=delivery.address,
                    attempts=delivery.attempts,
                    relay_failures=relay_failures,
                    decision=decision,
                    reply=reply,
                    reply_text=reason or _reply_text(reply, decision),
                    # The simulator's replies name no message a relay could report on.
                    relay_message_id=""
                    if claim.message.test_mode
                    else _relay_id(reply, decision, relay_ids),
                )
            )
            if decision.status == S.BOUNCED and is_hard_bounce(reply):
                bounces.append((claim.message.client_id, delivery.address, reply))
            if (
                decision.status == S.DELIVERED
                and claim.message.test_mode
                and simulator.complains(delivery.address)
            ):
                complaints.append(delivery.id)
            attempt_rows.append(
                (
                    claim.attempt_ids[delivery.id],
                    ATTEMPT_OUTCOME_OF_STATUS[decision.status].value,
                    reply.code,
                    reply.enhanced_code,
                    reply.text,
                    reply.relay,
                    durations.get(claim.message.id),
                )
            )
    with transaction.atomic():
        moved = deliveries_settle(outcomes=outcomes)
        deliveries_cancel_if_requested(
            delivery_ids=[
                o.delivery_id
                for o in outcomes
                if o.decision.status == S.DEFERRED and o.delivery_id in moved
            ]
        )
        for client_id, address, reply in bounces:
            suppression_add(
                client_id=client_id,
                address=address,
                reason=Suppression.Reason.HARD_BOUNCE,
                detail=str(reply),
            )
        # The simulated recipient complains as soon as it got the mail: in this transaction, so
        # the complaint is recorded exactly once, its event after the `delivered` one.
        deliveries_complain(
            delivery_ids=[delivery_id for delivery_id in complaints if delivery_id in moved],
            detail=simulator.COMPLAINT_DETAIL,
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
            rows=attempt_rows,
            # The partition key, as a constant: the plan reads the claim's day's partition only.
            condition="t.started_at = ANY(%s)",
            condition_params=[sorted({claim.started_at for claim in claims})],
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

    One message's fault stays its own (``_send_each``). Should anything else fail, the claimed
    deliveries are taken back at once as lost attempts (``deliveries_release``) and the error is
    raised again. A database that is away is the exception: nothing can be written then, so its
    error goes up as it is (the task retries) and the lease brings the deliveries back.
    """
    claims = deliveries_claim(message_ids=message_ids, task_id=task_id, worker=worker)
    if not claims:
        return {}
    try:
        replies, durations, unsendable = _send_each(claims, transport)
        decisions = attempts_record(
            claims=claims, replies=replies, durations=durations, unsendable=unsendable
        )
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:
        logger.exception("delivery task %s failed; releasing what it claimed", task_id)
        try:
            deliveries_release(
                claims=claims, reason=f"the task failed before it reported: {_describe(exc)}"
            )
        except Exception:
            logger.exception("could not release the deliveries; their lease will bring them back")
        raise
    _log_outcomes(claims, decisions)
    return decisions


def _send_each(
    claims: Sequence[Claim], transport: Transport
) -> tuple[dict[int, SmtpReply], dict[UUID, int], dict[int, str]]:
    """Send each claimed message; return the replies, the durations and why deliveries were
    not sent at all (see ``attempts_record``).

    A message is one SMTP transaction, or one per delivery when each has its own envelope
    sender or its own unsubscribe link, signed with its From domain's DKIM key if it has one
    (``deliveries.parcels``).
    Once the relay fails a transaction before any recipient is named, every live transaction
    after it gets the same reply without being tried."""
    # The transport stops a little before the lease ends (every SMTP command is bounded by what
    # is left), so the dispatcher never takes back a delivery whose attempt is still running.
    lease = conf.lease().total_seconds()
    deadline = time.monotonic() + lease - min(10.0, lease / 10)
    bounce_domain = conf.bounce_domain()
    public_url = conf.public_url()
    signers = _signers(claims)
    replies: dict[int, SmtpReply] = {}
    durations: dict[UUID, int] = {}
    unsendable: dict[int, str] = {}
    relay_failure: SmtpReply | None = None
    for claim in claims:
        simulated = claim.message.test_mode
        if relay_failure is not None and not simulated:
            replies.update({delivery.id: relay_failure for delivery in claim.claimed})
            continue
        with _about(claim):
            try:
                content = build_mime(claim.message, claim.recipients, claim.attachments)
                sender = _sender_address(claim.message.sender)
            except Exception as exc:  # whatever the content does, it fails alone
                problem = f"the message could not be built: {_describe(exc)}"
                content, sender = b"", ""
            else:
                problem = sender and _envelope_problem(sender, what="the sender")
            sendable = []
            for delivery in claim.claimed:
                refused = problem or _envelope_problem(delivery.address, what="the recipient")
                if refused:
                    unsendable[delivery.id] = refused
                    logger.warning("%s not sent: %s", delivery.address, refused)
                else:
                    sendable.append(delivery)
            if not sendable:
                continue
            sender_of = (
                simulator.Simulator(attempts={d.address: d.attempts for d in sendable})
                if simulated
                else transport
            )
            message_started = time.monotonic()
            for parcel in parcels(
                sendable,
                sender=sender,
                content=content,
                bounce_domain=bounce_domain,
                signer=signers.get((claim.message.client_id, from_domain(sender))),
                unsubscribe_base=public_url if wants_unsubscribe(claim.message) else "",
            ):
                if relay_failure is not None and not simulated:
                    replies.update({delivery.id: relay_failure for delivery in parcel.deliveries})
                    continue
                parcel_replies = _send_one(
                    parcel.deliveries, parcel.envelope, sender_of, deadline=deadline
                )
                replies.update(parcel_replies)
                if not simulated and all(map(is_relay_fault, parcel_replies.values())):
                    relay_failure = next(iter(parcel_replies.values()))
            durations[claim.message.id] = int((time.monotonic() - message_started) * 1000)
    return replies, durations, unsendable


def _signers(claims: Sequence[Claim]) -> dict[tuple[int, str], Signer]:
    """The DKIM signer of each live message's (client, From domain), found in one query. Test
    mail reaches no one, so it is not signed. Should the lookup fail, the task's mail goes out
    unsigned rather than not at all."""
    wanted = {
        (claim.message.client_id, from_domain(_sender_address(claim.message.sender)))
        for claim in claims
        if not claim.message.test_mode
    }
    try:
        return signers_for(wanted)
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        logger.exception("finding the DKIM keys failed: this task's mail goes out unsigned")
        return {}


@functools.lru_cache(maxsize=1024)
def _sender_address(sender: str) -> str:
    """The address in a stored From field (``Name <address>``). A worker sends for a handful of
    senders, and parsing one twice per message cost ~5 % of its CPU."""
    return parseaddr(sender)[1]


def _about(claim: Claim) -> AbstractContextManager[None]:
    """Log records written meanwhile name this claim's message and its client."""
    return log_context(message_id=str(claim.message.id), client=claim.message.client_id)


def _log_outcomes(claims: Sequence[Claim], decisions: Mapping[int, Decision]) -> None:
    """One line per message: what became of its recipients in this attempt."""
    for claim in claims:
        statuses = Counter(decisions[d.id].status.value for d in claim.claimed if d.id in decisions)
        with _about(claim):
            logger.info(
                "outcome: %s", ", ".join(f"{count} {status}" for status, count in statuses.items())
            )


#: What smtplib writes into MAIL FROM and RCPT TO as it is: printable ASCII without spaces.
#: Anything else makes it raise (non-ASCII needs SMTPUTF8, which Mailhub does not ask for) or
#: breaks the command; validation refuses such addresses, older rows may hold them.
_ENVELOPE_ADDRESS = re.compile(r"[!-~]+")


def _envelope_problem(address: str, *, what: str) -> str:
    """Why ``address`` cannot go into the envelope, or "" when it can."""
    if _ENVELOPE_ADDRESS.fullmatch(address):
        return ""
    return (
        f"the envelope could not be written: {what} {address!r} is not printable ASCII without "
        "spaces (SMTPUTF8 is not used)"
    )


def _send_one(
    deliveries: Sequence[Delivery], envelope: Envelope, transport: Transport, *, deadline: float
) -> dict[int, SmtpReply]:
    """The transport's reply for each delivery. The transport answers every server fault with a
    reply; should it raise instead (a bug, or content smtplib chokes on), the message is retried
    later, counted as an attempt so that it ends `failed` if it keeps doing that, and the
    connection, in an unknown state now, is dropped."""
    try:
        by_address = transport.send(envelope, deadline=deadline)
        return {delivery.id: by_address[delivery.address] for delivery in deliveries}
    except Exception as exc:  # one message's fault must not fail its task
        logger.exception("the transport raised while sending to %s", envelope.recipients)
        try:
            transport.close()
        except Exception:
            logger.exception("closing the transport after an error failed too")
        reply = SmtpReply(None, f"unexpected error while sending: {_describe(exc)}", Stage.DATA)
        return dict.fromkeys((delivery.id for delivery in deliveries), reply)


def _describe(exc: BaseException) -> str:
    """An exception in one line of at most 500 characters. A ValueError's words are written for
    people (the MIME builder's say which header holds what); anything else is named too."""
    text = " ".join(str(exc).split())
    if not isinstance(exc, ValueError) or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:500]


def deliveries_release(*, claims: Sequence[Claim], reason: str) -> int:
    """Settle at once, as lost attempts, the deliveries these claims hold that are still
    `sending` under their attempt: what the dispatcher would do when their lease ends, without
    making them (and their domain's connection slot) wait for it. Return how many moved.
    """
    now = timezone.now()
    moved = 0
    with transaction.atomic():
        for claim in claims:
            for delivery in claim.claimed:
                moved += (
                    delivery_mark_lost(
                        delivery_id=delivery.id,
                        attempts=delivery.attempts,
                        expires_at=claim.message.expires_at,
                        now=now,
                        reason=reason,
                    )
                    is not None
                )
        messages_refresh_status(message_ids=[claim.message.id for claim in claims])
    return moved


LEASE_EXPIRED = "worker lost: its lease expired before it reported"


def delivery_mark_lost(
    *,
    delivery_id: int,
    attempts: int,
    expires_at: datetime,
    now: datetime,
    reason: str = LEASE_EXPIRED,
) -> Decision | None:
    """Settle a delivery whose attempt was lost (its worker's lease expired, or its task failed
    before reporting): the attempt is `lost`, the delivery retried, or failed as quarantined once
    ``MAILHUB_QUARANTINE_AFTER_LOST_ATTEMPTS`` of its attempts were lost (``policy.decide_lost``);
    a retry of a delivery whose cancel was requested becomes a cancel. Return the decision, or
    None when the delivery is no longer `sending` under that attempt (someone else settled it).

    Counted as a failed attempt on purpose: a message that crashes its worker every time must
    end as `failed`, not loop forever.
    """
    with transaction.atomic():
        row = (
            Delivery.objects.select_for_update(of=("self",))
            .filter(id=delivery_id, status=S.SENDING, attempts=attempts)
            .values_list("lost_attempts", flat=True)
            .first()
        )
        if row is None:
            return None
        lost_attempts = row + 1
        reply = SmtpReply(None, reason, Stage.DATA)
        decision = decide_lost(
            attempts=attempts,
            lost_attempts=lost_attempts,
            quarantine_after=conf.quarantine_after_lost(),
            now=now,
            expires_at=expires_at,
            policy=conf.retry_policy(),
        )
        delivery_transition(
            delivery_id=delivery_id,
            to=decision.status,
            where=Q(status=S.SENDING, attempts=attempts),
            next_attempt_at=decision.next_attempt_at,
            last_code=None,
            last_enhanced_code="",
            last_reply=_reply_text(reply, decision),
            lost_attempts=lost_attempts,
        )
        Attempt.objects.filter(
            delivery_id=delivery_id, number=attempts, outcome=AttemptOutcome.PENDING
        ).update(outcome=AttemptOutcome.LOST, reply=reply.text)
        if decision.status == S.DEFERRED:
            deliveries_cancel_if_requested(delivery_ids=[delivery_id])
    return decision
