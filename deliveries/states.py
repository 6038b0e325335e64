"""The delivery state machine: every status a recipient's delivery can have, the legal moves,
and the vocabulary that goes with a status: the event a delivery emits on reaching it, and the
outcome an attempt that ends in it is recorded with.

Only ``deliveries.services`` writes ``Delivery.status``. A delivery is created in one of the
``INITIAL`` statuses (``services.storing``, for accept), then moved by the three writers in
``services.transitions``: ``deliveries_transition`` (any move, one or many rows),
``deliveries_start`` (the claim, to `sending`) and ``deliveries_settle`` (the outcomes of
attempts, many rows in one statement). Each updates only the rows whose current status may move
to the target by ``TRANSITIONS``; a row in any other status (most often: another process moved it
first) is skipped, not refused, and callers compare the count moved with the count asked for.
Asking for a move the table does not have at all raises ``IllegalTransition``. The message's own
status is derived from its deliveries' statuses by ``message_status_for``.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import models


class DeliveryStatus(models.TextChoices):
    SCHEDULED = "scheduled", "scheduled"  # waiting for its send_at time
    QUEUED = "queued", "queued"  # published to RabbitMQ, waiting for a worker
    SENDING = "sending", "sending"  # claimed by a worker, under a lease
    DEFERRED = "deferred", "deferred"  # temporary failure, waiting for next_attempt_at
    DELIVERED = "delivered", "delivered"
    BOUNCED = "bounced", "bounced"  # permanent failure (5xx)
    # Gave up: attempts or lifetime exhausted, content that cannot be built or addressed, or
    # quarantined after its attempts kept being lost.
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"
    SUPPRESSED = "suppressed", "suppressed"  # the address is on the suppression list


class EventType(models.TextChoices):
    """What an ``Event`` (and a webhook) says happened to a delivery (``Event.Type``)."""

    ACCEPTED = "accepted", "accepted"
    SCHEDULED = "scheduled", "scheduled"
    DELIVERED = "delivered", "delivered"
    DEFERRED = "deferred", "deferred"
    BOUNCED = "bounced", "bounced"
    FAILED = "failed", "failed"
    SUPPRESSED = "suppressed", "suppressed"
    CANCELLED = "cancelled", "cancelled"
    # The recipient reported the delivered mail as unwanted (a feedback-loop report, or the
    # simulator's `complaint@`); the delivery stays `delivered` (``EVENT_OF_REPORT``).
    COMPLAINED = "complained", "complained"
    # The recipient unsubscribed through the mail's one-click link (RFC 8058); the delivery
    # stays as it is (``EVENT_OF_REPORT``).
    UNSUBSCRIBED = "unsubscribed", "unsubscribed"


class AttemptOutcome(models.TextChoices):
    """How one try at a delivery ended (``Attempt.Outcome``)."""

    PENDING = "pending", "pending"  # SMTP under way (or the worker died during it)
    DELIVERED = "delivered", "delivered"
    DEFERRED = "deferred", "deferred"
    BOUNCED = "bounced", "bounced"
    FAILED = "failed", "failed"
    LOST = "lost", "lost"  # the worker's lease expired before it reported


S = DeliveryStatus

#: Statuses a delivery may be created in.
INITIAL = frozenset({S.QUEUED, S.SCHEDULED, S.SUPPRESSED})

#: from -> the statuses it may move to. A deferred delivery goes back through `queued` when the
#: dispatcher publishes it again, so `queued` always means "a task for it is in RabbitMQ". A
#: delivery being sent is never cancelled outright (its SMTP transaction may be done): a cancel
#: asked for meanwhile is carried out when the attempt ends, `sending -> deferred -> cancelled`,
#: if it would be retried (``services.transitions.message_cancel``).
TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    S.SCHEDULED: frozenset({S.QUEUED, S.CANCELLED}),
    S.QUEUED: frozenset({S.SENDING, S.CANCELLED, S.FAILED}),
    S.SENDING: frozenset({S.DELIVERED, S.DEFERRED, S.BOUNCED, S.FAILED}),
    S.DEFERRED: frozenset({S.QUEUED, S.FAILED, S.CANCELLED}),
    # Only an operator's "retry now" moves a failed delivery (it gave up, the fault is fixed).
    S.FAILED: frozenset({S.QUEUED}),
    # A relay that answered 250 may still fail to deliver and say so later: a bounce report
    # (a DSN to the VERP address, or an ESP's webhook) about a delivered delivery
    # (``services.bounces``). Nothing else moves a delivered delivery.
    S.DELIVERED: frozenset({S.BOUNCED}),
}

#: Statuses that will change again without anyone asking; the dispatcher's index covers these.
#: (A `delivered` delivery is final in this sense too: only a bounce report moves it.)
ACTIVE = frozenset({S.SCHEDULED, S.QUEUED, S.SENDING, S.DEFERRED})
FINAL = frozenset(S) - ACTIVE


#: The event a delivery emits on reaching each status, whether moved there
#: (``services.transitions``) or created in it (``EVENT_OF_CREATION``). None: the status is the
#: engine's own business and reaching it tells a client nothing: `sending`, and `queued`, which a
#: delivery reaches again whenever a task for it is due (released, retried, republished).
EVENT_OF_STATUS: dict[DeliveryStatus, EventType | None] = {
    S.SCHEDULED: EventType.SCHEDULED,
    S.QUEUED: None,
    S.SENDING: None,
    S.DELIVERED: EventType.DELIVERED,
    S.DEFERRED: EventType.DEFERRED,
    S.BOUNCED: EventType.BOUNCED,
    S.FAILED: EventType.FAILED,
    S.CANCELLED: EventType.CANCELLED,
    S.SUPPRESSED: EventType.SUPPRESSED,
}

#: The event of a delivery created in each initial status (``services.storing``): its status's
#: own, and `accepted` for `queued`, whose own is none.
EVENT_OF_CREATION: dict[DeliveryStatus, EventType] = {
    status: EVENT_OF_STATUS[status] or EventType.ACCEPTED for status in sorted(INITIAL)
}

#: Events that move no delivery: reports about a delivery that arrive after its fate was
#: decided, each with the statuses a delivery must be in for it to be recorded
#: (``services.complaints``). A complaint is about mail the recipient got, so only a delivered
#: delivery can have one.
EVENT_OF_REPORT: dict[EventType, frozenset[DeliveryStatus]] = {
    EventType.COMPLAINED: frozenset({S.DELIVERED}),
    EventType.UNSUBSCRIBED: frozenset({S.DELIVERED}),
}

#: The outcome an attempt is recorded with, by the status it moved its delivery to: every status
#: a move from `sending` reaches (``services.sending.attempts_record``). The other outcomes are
#: not a status's: `pending` while the attempt is under way, `lost` when it never reported
#: (whatever its delivery became then, ``services.sending.delivery_mark_lost``).
ATTEMPT_OUTCOME_OF_STATUS: dict[DeliveryStatus, AttemptOutcome] = {
    S.DELIVERED: AttemptOutcome.DELIVERED,
    S.DEFERRED: AttemptOutcome.DEFERRED,
    S.BOUNCED: AttemptOutcome.BOUNCED,
    S.FAILED: AttemptOutcome.FAILED,
}


class IllegalTransition(ValueError):
    pass


def sources_of(target: DeliveryStatus) -> list[DeliveryStatus]:
    """The statuses from which ``target`` may be reached."""
    sources = [source for source, targets in TRANSITIONS.items() if target in targets]
    if not sources:
        raise IllegalTransition(f"no status may move to {target!r}")
    return sources


def check_transition(source: DeliveryStatus, target: DeliveryStatus) -> None:
    if target not in TRANSITIONS.get(source, frozenset()):
        raise IllegalTransition(f"a delivery cannot move from {source!r} to {target!r}")


class MessageStatus(models.TextChoices):
    SCHEDULED = "scheduled", "scheduled"
    QUEUED = "queued", "queued"
    SENDING = "sending", "sending"
    DEFERRED = "deferred", "deferred"
    DELIVERED = "delivered", "delivered"
    PARTIALLY_DELIVERED = "partially_delivered", "partially delivered"
    BOUNCED = "bounced", "bounced"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"
    SUPPRESSED = "suppressed", "suppressed"


#: Message statuses after which nothing will happen to a message any more.
FINISHED_MESSAGE_STATUSES = (
    MessageStatus.DELIVERED,
    MessageStatus.PARTIALLY_DELIVERED,
    MessageStatus.BOUNCED,
    MessageStatus.FAILED,
    MessageStatus.CANCELLED,
    MessageStatus.SUPPRESSED,
)

# While any delivery is still moving, the message shows the most advanced of the moving states.
_IN_FLIGHT_ORDER = [S.SENDING, S.QUEUED, S.DEFERRED, S.SCHEDULED]
# All final and not all the same, without a delivered one: the worst outcome present.
_MIXED_FINAL_ORDER = [S.BOUNCED, S.FAILED, S.SUPPRESSED]


def message_status_for(statuses: Iterable[str]) -> MessageStatus:
    """Roll a message's delivery statuses up into one status for the message."""
    present = {DeliveryStatus(status) for status in statuses}
    if not present:
        raise ValueError("a message has at least one delivery")
    for status in _IN_FLIGHT_ORDER:
        if status in present:
            return MessageStatus(status.value)
    if len(present) == 1:
        return MessageStatus(present.pop().value)
    if S.DELIVERED in present:
        return MessageStatus.PARTIALLY_DELIVERED
    for status in _MIXED_FINAL_ORDER:
        if status in present:
            return MessageStatus(status.value)
    return MessageStatus.CANCELLED


def message_status_sql(column: str) -> str:
    """``message_status_for`` as a SQL aggregate over the delivery statuses in ``column``, so
    Postgres can roll messages up without sending their deliveries' statuses over the wire.
    Built from the same order as the Python rule; a test holds the two equal on every input."""

    def when_any(status: DeliveryStatus, then: str) -> str:
        return f"WHEN bool_or({column} = '{status.value}') THEN '{then}'"

    return " ".join(
        [
            "CASE",
            *(when_any(status, status.value) for status in _IN_FLIGHT_ORDER),
            f"WHEN min({column}) = max({column}) THEN min({column})",
            when_any(S.DELIVERED, MessageStatus.PARTIALLY_DELIVERED.value),
            *(when_any(status, status.value) for status in _MIXED_FINAL_ORDER),
            f"ELSE '{MessageStatus.CANCELLED.value}' END",
        ]
    )
