"""Reads. Every query that answers a client starts from that client."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db.models import Q
from django.utils.dateparse import parse_datetime

from accounts.models import Client
from deliveries.models import Event
from webhooks.models import Endpoint, WebhookAttempt

#: The event's own columns in the event document (``webhooks.serializers.EventDocumentSerializer``),
#: which adds its message's tags and metadata.
EVENT_COLUMNS = (
    "id",
    "type",
    "created_at",
    "message_id",
    "recipient",
    "attempt",
    "smtp_code",
    "enhanced_code",
    "reply",
    "next_attempt_at",
    "test_mode",
)


def events_with_message():
    """Events with what the event document needs of their message: not its bodies, which can be
    megabytes, only its tags and metadata."""
    return Event.objects.select_related("message").only(
        *EVENT_COLUMNS, "message__tags", "message__metadata"
    )


# -- the event log ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """Where a page ended: events are ordered by (created_at, id), a total order."""

    created_at: datetime
    id: UUID

    def encode(self) -> str:
        raw = json.dumps([self.created_at.isoformat(), str(self.id)]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Position:
        """Raise ValueError for anything that is not a cursor this API gave out."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            created_at_text, id_text = json.loads(raw)
            created_at = parse_datetime(created_at_text)
            position_id = UUID(id_text)
        except (binascii.Error, ValueError, TypeError, AttributeError) as exc:
            raise ValueError("not a valid cursor") from exc
        if created_at is None or created_at.tzinfo is None:
            raise ValueError("not a valid cursor")
        return cls(created_at=created_at, id=position_id)


@dataclass(frozen=True)
class EventFilter:
    test_mode: bool | None = None  # test-mode mail's events only, live mail's only, or both
    types: tuple[str, ...] = ()
    message_id: UUID | None = None
    recipient: str = ""
    created_after: datetime | None = None  # inclusive
    created_before: datetime | None = None  # exclusive
    oldest_first: bool = False


def events_page(
    *, client: Client, where: EventFilter, after: Position | None, limit: int
) -> tuple[list[Event], Position | None]:
    """One page of the client's events and the position to continue from (None: last page).

    Keyset pagination over ``(created_at, id)``: a page costs the same however deep it is, and
    events written meanwhile neither repeat nor shift what a cursor points at.
    """
    queryset = events_with_message().filter(client=client)
    if where.test_mode is not None:
        queryset = queryset.filter(test_mode=where.test_mode)
    if where.types:
        queryset = queryset.filter(type__in=where.types)
    if where.message_id is not None:
        queryset = queryset.filter(message_id=where.message_id)
    if where.recipient:
        queryset = queryset.filter(recipient__iexact=where.recipient)
    if where.created_after is not None:
        queryset = queryset.filter(created_at__gte=where.created_after)
    if where.created_before is not None:
        queryset = queryset.filter(created_at__lt=where.created_before)
    if where.oldest_first:
        if after is not None:
            queryset = queryset.filter(
                Q(created_at__gt=after.created_at) | Q(created_at=after.created_at, id__gt=after.id)
            )
        queryset = queryset.order_by("created_at", "id")
    else:
        if after is not None:
            queryset = queryset.filter(
                Q(created_at__lt=after.created_at) | Q(created_at=after.created_at, id__lt=after.id)
            )
        queryset = queryset.order_by("-created_at", "-id")
    events = list(queryset[: limit + 1])
    if len(events) <= limit:
        return events, None
    events = events[:limit]
    return events, Position(created_at=events[-1].created_at, id=events[-1].id)


# -- endpoints -------------------------------------------------------------------------------


def endpoints_for_client(*, client: Client) -> list[Endpoint]:
    return list(Endpoint.objects.filter(client=client).order_by("created_at"))


def endpoint_get_for_client(*, client: Client, endpoint_id: UUID) -> Endpoint | None:
    return Endpoint.objects.filter(client=client, id=endpoint_id).first()


def attempts_page(
    *, endpoint: Endpoint, before_id: int | None, limit: int
) -> tuple[list[WebhookAttempt], int | None]:
    """The endpoint's attempts, newest first, and the id to continue before (None: last page)."""
    queryset = WebhookAttempt.objects.filter(endpoint=endpoint)
    if before_id is not None:
        queryset = queryset.filter(id__lt=before_id)
    attempts = list(queryset.order_by("-id")[: limit + 1])
    if len(attempts) <= limit:
        return attempts, None
    return attempts[:limit], attempts[limit - 1].id
