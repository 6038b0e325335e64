"""Reads. Every query that answers a client starts from that client; the operator's (the
admin's and the management commands'), further down, see every client's mail."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.db.models import Exists, OuterRef, Prefetch, QuerySet, prefetch_related_objects
from django.utils import timezone

from accounts.models import Client
from deliveries.models import Attempt, Delivery, Event, Message, Suppression, Template
from deliveries.partitions import HISTORY_TABLES, HistoryTable, Partition, partitions_of, since
from deliveries.states import FINISHED_MESSAGE_STATUSES


def message_get_for_client(*, client: Client, message_id: UUID) -> Message | None:
    """The message with its deliveries and their attempts, or None if it is not this client's."""
    message = Message.objects.filter(client=client, id=message_id).first()
    if message is None:
        return None
    # Attempts start after their message was accepted: the partitions before are not read.
    attempts = Attempt.objects.filter(started_at__gte=since(message.created_at))
    prefetch_related_objects(
        [message],
        Prefetch(
            "deliveries",
            queryset=Delivery.objects.order_by("id").prefetch_related(
                Prefetch("attempt_set", queryset=attempts.order_by("number"))
            ),
        ),
    )
    return message


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
    accepted = (
        Message.objects.filter(client=client, id=message_id)
        .values_list("created_at", flat=True)
        .first()
    )
    if accepted is None:
        return None
    # Events follow their message's acceptance: the partitions before are not read.
    return list(
        Event.objects.filter(
            client=client, message_id=message_id, created_at__gte=since(accepted)
        ).order_by("created_at", "delivery_id", "type")
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


def delivery_address(*, delivery_id: int) -> str | None:
    """The address a delivery was (or is to be) sent to; None if there is no such delivery."""
    return Delivery.objects.filter(id=delivery_id).values_list("address", flat=True).first()


# -- reports from a relay ------------------------------------------------------------------------

# The Message-ID Mailhub writes: the message's id in hex, "@", the sender's domain
# (``mime.make_message_id``).
_OUR_MESSAGE_ID = re.compile(r"<?([0-9a-f]{32})@([^<>@\s]{1,255})>?")


def delivery_of_relay_report(
    *, relay_ids: Sequence[str], message_ids: Sequence[str], recipient: str
) -> int | None:
    """The delivery a relay's report is about, found through our own records only: the relay's
    id of the message from its 250 reply, or the Message-ID header we wrote, each with the
    recipient the report names. None when neither names one of ours.

    A relay id is shared by the recipients of one SMTP transaction, hence the recipient. Short
    ids of a plain MTA (Postfix's queue ids) come round again in time: the latest delivery wins.
    """
    if not recipient:
        return None
    for relay_id in relay_ids:
        if not relay_id:
            continue
        found = (
            Delivery.objects.filter(relay_message_id=relay_id, address__iexact=recipient)
            # Said out loud so the planner sees the partial index's condition.
            .exclude(relay_message_id="")
            .order_by("-id")
            .values_list("id", flat=True)
            .first()
        )
        if found is not None:
            return found
    for header in message_ids:
        ours = _OUR_MESSAGE_ID.fullmatch(header.strip())
        if ours is None:
            continue
        message_uuid = UUID(ours.group(1))
        wanted = f"<{ours.group(1)}@{ours.group(2)}>".lower()
        for delivery_id, message_id in Delivery.objects.filter(
            message_id=message_uuid, address__iexact=recipient
        ).values_list("id", "message__message_id"):
            if message_id.lower() == wanted:
                return delivery_id
    return None


def history_partitions_ending_by(*, before: datetime) -> list[tuple[HistoryTable, Partition]]:
    """The history partitions whose every row is older than ``before``: retention drops them
    whole."""
    return [
        (table, partition)
        for table in HISTORY_TABLES
        for partition in partitions_of(table)
        if partition.ends_by(before)
    ]


def delivery_exists(*, delivery_id: int) -> bool:
    """Whether the delivery is still stored (a purged message's are not)."""
    return Delivery.objects.filter(id=delivery_id).exists()
