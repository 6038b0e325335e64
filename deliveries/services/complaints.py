"""Complaints: a recipient reported mail they received as unwanted.

Today the simulator's ``complaint@`` address reports them (``services.sending``, for test-mode
mail); a receiver of feedback-loop reports (ARF, RFC 5965) is meant to call the same service for
live mail. A complaint moves no delivery (it stays `delivered`, ``states.EVENT_OF_REPORT``): it
is a `complained` event, which webhooks carry like every other, and the address suppressed with
reason `complaint`, so that the client's mail does not go to it again.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from deliveries.models import Delivery, Event, Suppression
from deliveries.services.suppressions import suppression_add
from deliveries.services.transitions import EVENT_SOURCE_COLUMNS, events_of
from deliveries.states import EVENT_OF_REPORT, EventType


def deliveries_complain(
    *, delivery_ids: Collection[int], detail: str, now: datetime | None = None
) -> set[int]:
    """Record a complaint about each of these deliveries; return the ids it was recorded for.

    Only a delivery in a status the complaint may be about (`delivered`) gets one, and only
    once: a report repeated (feedback loops do send duplicates) changes nothing. ``detail`` is
    the event's reply and the suppression's detail.
    """
    if not delivery_ids:
        return set()
    now = now or timezone.now()
    complained = Event.objects.filter(delivery=OuterRef("pk"), type=EventType.COMPLAINED)
    with transaction.atomic():
        rows = list(
            Delivery.objects.filter(
                id__in=list(delivery_ids), status__in=EVENT_OF_REPORT[EventType.COMPLAINED]
            )
            .filter(~Exists(complained))
            .select_for_update(of=("self",))
            .values_list(*EVENT_SOURCE_COLUMNS)
        )
        Event.objects.bulk_create(events_of(rows, type=EventType.COMPLAINED, now=now, reply=detail))
        for _, _, client_id, address, _, _ in rows:
            suppression_add(
                client_id=client_id,
                address=address,
                reason=Suppression.Reason.COMPLAINT,
                detail=detail,
            )
    return {row[0] for row in rows}
