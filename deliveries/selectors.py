"""Reads. Every query that answers a client starts from that client."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from uuid import UUID

from django.db.models import Exists, OuterRef, Prefetch, QuerySet

from accounts.models import Client
from deliveries.models import Attempt, Delivery, Event, Message, Suppression, Template


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
    statuses: Sequence[str] = (),
    recipient: str | None = None,
    tags: Sequence[str] = (),
    metadata: Mapping[str, str] | None = None,
    priorities: Sequence[str] = (),
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Message]:
    """The client's messages matching every filter given, each with its recipients."""
    messages = Message.objects.filter(client=client)
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
