"""``insert_objects`` stores exactly what ``bulk_create`` stores, for every model it is used on."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.forms.models import model_to_dict
from django.utils import timezone

from api.services import client_get_or_create
from deliveries.bulk import insert_objects
from deliveries.models import Attachment, Delivery, Event, Message

pytestmark = pytest.mark.integration


def _message(client, **fields) -> Message:
    now = timezone.now()
    return Message(
        id=uuid.uuid4(),
        client=client,
        sender="Ann <ann@shop.test>",
        subject="Ünïcode subject",
        text_body="text",
        headers={"X-Campaign": "spring"},
        tags=["a", "b"],
        metadata={"order": "A-1", "nested": "ok"},
        message_id=f"<{uuid.uuid4().hex}@shop.test>",
        created_at=now,
        expires_at=now + timedelta(hours=1),
        **fields,
    )


def _rows(objects) -> list[dict]:
    return [model_to_dict(type(obj).objects.get(pk=obj.pk)) for obj in objects]


def _without(rows: list[dict], *names: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in names} for row in rows]


def test_rows_match_bulk_create_and_generated_keys_are_set(db):
    client = client_get_or_create(name="acme")
    ours, django = [_message(client), _message(client, priority="high")], [_message(client)]
    django.append(_message(client, priority="high"))

    insert_objects(ours)
    Message.objects.bulk_create(django)

    differ = ("id", "message_id", "created_at", "expires_at")  # unique or "now" per message
    assert _without(_rows(ours), *differ) == _without(_rows(django), *differ)
    deliveries = [
        Delivery(
            message=ours[0],
            address=f"r{i}@example.com",
            domain="example.com",
            updated_at=ours[0].created_at,
        )
        for i in range(3)
    ]
    insert_objects(deliveries)
    assert all(d.pk is not None and not d._state.adding for d in deliveries)
    stored = Delivery.objects.filter(message=ours[0]).order_by("id")
    assert [(d.id, d.address, d.status, d.attempts) for d in stored] == [
        (d.id, d.address, d.status, 0) for d in deliveries
    ]


def test_events_and_attachments_keep_their_defaults(db):
    client = client_get_or_create(name="acme")
    message = _message(client)
    insert_objects([message])
    delivery = Delivery(
        message=message, address="r@example.com", domain="example.com", updated_at=timezone.now()
    )
    insert_objects([delivery])
    event = Event(
        client=client,
        message=message,
        delivery=delivery,
        type=Event.Type.ACCEPTED,
        recipient=delivery.address,
        created_at=message.created_at,
    )
    part = Attachment(
        message=message,
        filename="a.pdf",
        content_type="application/pdf",
        content=b"\x00%PDF",
        size=5,
    )

    insert_objects([event])
    insert_objects([part])

    stored = Event.objects.get(pk=event.pk)
    assert (stored.fanned_out, stored.attempt, stored.reply) == (False, 0, "")
    assert bytes(Attachment.objects.get(pk=part.pk).content) == b"\x00%PDF"


def test_nothing_to_insert_is_no_statement(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        insert_objects([])
