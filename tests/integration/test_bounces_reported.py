"""A bounce reported after delivery (``services.bounces``) on the real Postgres: it moves only a
delivered delivery, once, with its event, its suppression and its message's status."""

import pytest

from deliveries.models import Delivery, Event, Suppression
from deliveries.services import deliveries_bounce_reported
from deliveries.states import DeliveryStatus, MessageStatus
from tests.support.ops import seed_message, statuses_of

pytestmark = pytest.mark.integration
S = DeliveryStatus
DETAIL = "smtp; 550 5.1.1 <ann@example.com>: Recipient address rejected: User unknown"


def test_a_delivered_delivery_becomes_bounced_with_its_event_and_suppression(acme):
    message = seed_message(acme.client, status=S.DELIVERED)
    delivery = message.deliveries.get()

    moved = deliveries_bounce_reported(
        delivery_ids=[delivery.id], detail=DETAIL, smtp_code=550, enhanced_code="5.1.1"
    )

    assert moved == {delivery.id}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_code, delivery.last_enhanced_code) == (
        S.BOUNCED,
        550,
        "5.1.1",
    )
    assert delivery.last_reply == DETAIL
    event = Event.objects.get(delivery=delivery, type=Event.Type.BOUNCED)
    assert (event.smtp_code, event.enhanced_code, event.reply) == (550, "5.1.1", DETAIL)
    suppression = Suppression.objects.get(client=acme.client, address="ann@example.com")
    assert (suppression.reason, suppression.detail) == (Suppression.Reason.HARD_BOUNCE, DETAIL)
    message.refresh_from_db()
    assert message.status == MessageStatus.BOUNCED


def test_a_repeated_report_changes_nothing_more(acme):
    delivery = seed_message(acme.client, status=S.DELIVERED).deliveries.get()
    deliveries_bounce_reported(delivery_ids=[delivery.id], detail=DETAIL)

    assert deliveries_bounce_reported(delivery_ids=[delivery.id], detail="again") == set()
    assert Event.objects.filter(delivery=delivery, type=Event.Type.BOUNCED).count() == 1
    assert Delivery.objects.get(id=delivery.id).last_reply == DETAIL


@pytest.mark.parametrize("status", [S.QUEUED, S.SENDING, S.DEFERRED, S.FAILED, S.CANCELLED])
def test_a_delivery_that_was_not_delivered_is_left_alone(acme, status):
    message = seed_message(acme.client, status=status)

    assert deliveries_bounce_reported(delivery_ids=list(ids(message)), detail=DETAIL) == set()
    assert statuses_of(message) == [status]
    assert not Suppression.objects.filter(client=acme.client).exists()


def test_one_recipient_of_several_bounces_and_the_message_is_partly_delivered(acme):
    message = seed_message(
        acme.client, status=S.DELIVERED, recipients=("ann@example.com", "bob@example.com")
    )
    ann = message.deliveries.get(address="ann@example.com")

    deliveries_bounce_reported(delivery_ids=[ann.id], detail=DETAIL)

    assert sorted(statuses_of(message)) == [S.BOUNCED, S.DELIVERED]
    message.refresh_from_db()
    assert message.status == MessageStatus.PARTIALLY_DELIVERED


def ids(message):
    return message.deliveries.values_list("id", flat=True)
