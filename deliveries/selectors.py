"""Reads. Every query that answers a client starts from that client; the operator's (the
admin's and the management commands'), further down, see every client's mail."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django.utils import timezone

from accounts.models import Client
from deliveries.models import Attempt, Delivery, Event, Message, Suppression, Template
from deliveries.states import FINISHED_MESSAGE_STATUSES


def message_get_for_client(*, client: Client, message_id: UUID) -> Message | None:
    """The message with its deliveries and their attempts, or None if it is not this client's."""
    return (
        Message.objects.filter(client=client, id=message_id)
        .prefetch_related(
            Prefetch(
                "deliveries",
                queryset=Delivery.objects.order_by("id").prefetch_related(
                    Prefetch("attempt_set", queryset=Attempt.objects.order_by("number"))
                ),
            )
        )
        .first()
    )


def messages_for_client(
    *,
    client: Client,
    test_mode: bool | None = None,
    statuses: Sequence[str] = (),
    recipient: str | None = None,
    tags: Sequence[str] = (),
    metadata: Mapping[str, str] | None = None,
    priorities: Sequence[str] = (),
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Message]:
    """The client's messages matching every filter given, each with its recipients.

    ``test_mode``: test-mode messages only (True), live ones only (False), or both (None).
    """
    messages = Message.objects.filter(client=client)
    if test_mode is not None:
        messages = messages.filter(test_mode=test_mode)
    if statuses:
        messages = messages.filter(status__in=statuses)
    if priorities:
        messages = messages.filter(priority__in=priorities)
    if tags:
        messages = messages.filter(tags__contains=list(tags))  # all of them; GIN index
    if metadata:
        messages = messages.filter(metadata__contains=dict(metadata))
    if created_after is not None:
        messages = messages.filter(created_at__gte=created_after)
    if created_before is not None:
        messages = messages.filter(created_at__lt=created_before)
    if recipient:
        # EXISTS rather than a join, so a message with the address twice is listed once.
        messages = messages.filter(
            Exists(Delivery.objects.filter(message=OuterRef("pk"), address__iexact=recipient))
        )
    return messages.prefetch_related(
        Prefetch("deliveries", queryset=Delivery.objects.order_by("id"))
    )


def message_events_for_client(*, client: Client, message_id: UUID) -> list[Event] | None:
    """The message's events, oldest first, or None if it is not this client's message."""
    if not Message.objects.filter(client=client, id=message_id).exists():
        return None
    return list(
        Event.objects.filter(client=client, message_id=message_id).order_by(
            "created_at", "delivery_id", "type"
        )
    )


def templates_for_client(*, client: Client) -> QuerySet[Template]:
    return Template.objects.filter(client=client)


def template_get_for_client(*, client: Client, name: str) -> Template | None:
    return Template.objects.filter(client=client, name=name).first()


def templates_by_name(*, client: Client, names: Iterable[str]) -> dict[str, Template]:
    """The named templates of the client, in one query (a batch may name several)."""
    return {t.name: t for t in Template.objects.filter(client=client, name__in=set(names))}


def suppressions_for_client(
    *, client: Client, address: str | None = None, reasons: Sequence[str] = ()
) -> QuerySet[Suppression]:
    suppressions = Suppression.objects.filter(client=client)
    if address:
        suppressions = suppressions.filter(address=address.lower())
    if reasons:
        suppressions = suppressions.filter(reason__in=reasons)
    return suppressions


def suppression_get_for_client(*, client: Client, address: str) -> Suppression | None:
    return Suppression.objects.filter(client=client, address=address.lower()).first()


# -- the operator's ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliverySelection:
    """Which deliveries an operator means, as the commands' options name them.

    Empty fields do not filter. Ages are measured from when the message was accepted, through
    the index on ``Message.created_at``.
    """

    message_ids: Sequence[UUID] = ()
    delivery_ids: Sequence[int] = ()
    statuses: Sequence[str] = ()
    domain: str = ""
    older_than: timedelta | None = None
    newer_than: timedelta | None = None
    client: str = ""
    priority: str = ""

    @property
    def is_empty(self) -> bool:
        return not (
            self.message_ids
            or self.delivery_ids
            or self.statuses
            or self.domain
            or self.older_than
            or self.newer_than
            or self.client
            or self.priority
        )


def deliveries_select(*, selection: DeliverySelection, allowed: Sequence[str]) -> QuerySet:
    """The deliveries the selection names, restricted to the ``allowed`` statuses."""
    statuses = [s for s in (selection.statuses or allowed) if s in allowed]
    queryset = Delivery.objects.filter(status__in=statuses)
    now = timezone.now()
    if selection.message_ids:
        queryset = queryset.filter(message_id__in=selection.message_ids)
    if selection.delivery_ids:
        queryset = queryset.filter(id__in=selection.delivery_ids)
    if selection.domain:
        queryset = queryset.filter(address__iendswith="@" + selection.domain.lstrip("@"))
    if selection.older_than is not None:
        queryset = queryset.filter(message__created_at__lte=now - selection.older_than)
    if selection.newer_than is not None:
        queryset = queryset.filter(message__created_at__gte=now - selection.newer_than)
    if selection.client:
        queryset = queryset.filter(message__client__name=selection.client)
    if selection.priority:
        queryset = queryset.filter(message__priority=selection.priority)
    return queryset


def messages_purgeable(*, created_before: datetime, client: str = "") -> QuerySet:
    """Finished messages accepted before the cutoff (range scan on ``Message.created_at``)."""
    queryset = Message.objects.filter(
        created_at__lt=created_before, status__in=FINISHED_MESSAGE_STATUSES
    )
    if client:
        queryset = queryset.filter(client__name=client)
    return queryset


def delivery_exists(*, delivery_id: int) -> bool:
    """Whether the delivery is still stored (a purged message's are not)."""
    return Delivery.objects.filter(id=delivery_id).exists()
