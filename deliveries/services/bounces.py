"""Bounces reported after the fact: the relay answered 250, then the mail could not be delivered,
and a report says so later: a delivery status notification sent to the delivery's VERP address
(the `bounces` process), or an ESP's tracking webhook. Such a report moves the delivery from
`delivered` to `bounced` (the one move out of `delivered`, ``states.TRANSITIONS``), writes its
`bounced` event, which webhooks carry like every other, suppresses the address for the client
with reason `hard_bounce`, and rolls the message's status up again.

Whoever calls this has already decided the report is genuine and names these deliveries (a
verified token, an ESP's signed event): this module trusts its arguments, never a report.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from deliveries.models import Delivery, Event, Suppression
from deliveries.services.suppressions import suppression_add
from deliveries.services.transitions import (
    EVENT_SOURCE_COLUMNS,
    events_of,
    messages_refresh_status,
)
from deliveries.states import EVENT_OF_STATUS, DeliveryStatus, check_transition

S = DeliveryStatus


def deliveries_bounce_reported(
    *,
    delivery_ids: Collection[int],
    detail: str,
    smtp_code: int | None = None,
    enhanced_code: str = "",
    now: datetime | None = None,
) -> set[int]:
    """Record a hard bounce reported after delivery; return the ids of the deliveries it moved.

    Only a `delivered` delivery moves, so a report repeated (reports do arrive twice), or about
    a delivery that bounced, failed or was never sent, changes nothing. ``detail`` (the report's
    diagnostic, e.g. "smtp; 550 5.1.1 user unknown") becomes the delivery's last reply, the
    event's reply and the suppression's detail; ``smtp_code`` and ``enhanced_code`` the
    report's status, when it gives them.
    """
    check_transition(S.DELIVERED, S.BOUNCED)
    if not delivery_ids:
        return set()
    now = now or timezone.now()
    detail = " ".join(detail.split())[:1000]
    enhanced_code = enhanced_code[:16]
    with transaction.atomic():
        rows = list(
            Delivery.objects.filter(id__in=list(delivery_ids), status=S.DELIVERED)
            .select_for_update(of=("self",))
            .values_list(*EVENT_SOURCE_COLUMNS)
        )
        if not rows:
            return set()
        moved = [row[0] for row in rows]
        Delivery.objects.filter(id__in=moved).update(
            status=S.BOUNCED,
            updated_at=now,
            last_code=smtp_code,
            last_enhanced_code=enhanced_code,
            last_reply=detail,
        )
        event_type = EVENT_OF_STATUS[S.BOUNCED]
        assert event_type is not None
        Event.objects.bulk_create(
            events_of(
                rows,
                type=event_type,
                now=now,
                smtp_code=smtp_code,
                enhanced_code=enhanced_code,
                reply=detail,
            )
        )
        for _, _, client_id, address, _, _ in rows:
            suppression_add(
                client_id=client_id,
                address=address,
                reason=Suppression.Reason.HARD_BOUNCE,
                detail=detail,
            )
        messages_refresh_status(message_ids={row[1] for row in rows})
    return set(moved)
