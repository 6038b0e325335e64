"""Reads. Every query that answers a client starts from that client."""

from __future__ import annotations

from uuid import UUID

from django.db.models import Prefetch

from api.models import Client
from deliveries.models import Attempt, Delivery, Message


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
