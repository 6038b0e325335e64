"""One-click unsubscribes (RFC 8058): a recipient asked, through the ``List-Unsubscribe`` link
of the mail they received, to get no more of the client's mail.

Like a complaint, an unsubscribe moves no delivery (``states.EVENT_OF_REPORT``): it is an
`unsubscribed` event, which webhooks carry like every other, and the address suppressed for the
client with reason `unsubscribe`. Asking again changes nothing.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from deliveries.models import Delivery, Event, Suppression
from deliveries.services.suppressions import suppression_add
from deliveries.services.transitions import EVENT_SOURCE_COLUMNS, events_of
from deliveries.states import EVENT_OF_REPORT, EventType

#: The event's reply and the suppression's detail.
UNSUBSCRIBE_DETAIL = "one-click unsubscribe (RFC 8058)"


def delivery_unsubscribe(*, delivery_id: int, now: datetime | None = None) -> bool:
    """Record that the recipient of this delivery unsubscribed; False if there is no such
    delivery (nothing is written then).

    The address is suppressed whatever became of the delivery: the recipient asked. The event is
    written once, and only for a delivery in a status it may be about (`delivered`).
    """
    now = now or timezone.now()
    unsubscribed = Event.objects.filter(delivery=OuterRef("pk"), type=EventType.UNSUBSCRIBED)
    with transaction.atomic():
        row = (
            Delivery.objects.filter(id=delivery_id)
            .select_for_update(of=("self",))
            .annotate(already=Exists(unsubscribed))
            .values_list("status", "already", *EVENT_SOURCE_COLUMNS)
            .first()
        )
        if row is None:
            return False
        status, already, *source = row
        _, _, client_id, address, _, _ = source
        if not already and status in EVENT_OF_REPORT[EventType.UNSUBSCRIBED]:
            Event.objects.bulk_create(
                events_of([source], type=EventType.UNSUBSCRIBED, now=now, reply=UNSUBSCRIBE_DETAIL)
            )
        suppression_add(
            client_id=client_id,
            address=address,
            reason=Suppression.Reason.UNSUBSCRIBE,
            detail=UNSUBSCRIBE_DETAIL,
        )
    return True
