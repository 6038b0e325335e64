"""The delivery state machine: every status a recipient's delivery can have and the legal moves.

``deliveries.services.delivery_transition`` is the only code that writes ``Delivery.status``, and
it refuses any move this table does not allow. The message's own status is derived from its
deliveries' statuses by ``message_status_for``.
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
}

#: Statuses that will change again without anyone asking; the dispatcher's index covers these.
ACTIVE = frozenset({S.SCHEDULED, S.QUEUED, S.SENDING, S.DEFERRED})
FINAL = frozenset(S) - ACTIVE


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
