"""``messages_accept`` writes with hand-assembled SQL, one statement for a few messages and COPY
for many: either way its rows must be exactly the rows the ORM would have saved from the same
values, defaults included, and a failure must leave nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Client
from accounts.services import client_get_or_create
from deliveries.models import Attachment, Delivery, Event, Message
from deliveries.services import (
    AttachmentDraft,
    MessageDraft,
    Recipient,
    messages_accept,
    storing,
    suppression_add,
)
from deliveries.services.storing import ATTACHMENT_COLUMNS, MESSAGE_COLUMNS, DeliveryRow

pytestmark = pytest.mark.integration


def _columns(model) -> set[str]:
    return {field.column for field in model._meta.concrete_fields}


def test_every_column_is_written():
    # A column left out would silently take NULL (or fail) instead of its model's default. The
    # message's in the model's order: accept builds the instance from them by position.
    assert tuple(field.column for field in Message._meta.concrete_fields) == MESSAGE_COLUMNS
    assert set(DeliveryRow._fields) == _columns(Delivery) - {"id"}
    assert set(ATTACHMENT_COLUMNS) == _columns(Attachment) - {"id"}


def test_a_new_delivery_has_its_models_defaults():
    for name, default in DeliveryRow._field_defaults.items():
        assert default == Delivery._meta.get_field(name).get_default(), name


@pytest.fixture(params=["one statement", "copy"])
def way(request, monkeypatch) -> str:
    """Each test once with each way of writing, whatever the number of messages."""
    monkeypatch.setattr(storing, "COPY_FROM", 1 if request.param == "copy" else 10**9)
    return request.param


def _draft(**fields) -> MessageDraft:
    # Everything that needs quoting or escaping in SQL or in COPY's text format.
    values = {
        "sender": '"Ann \\ O\'Hara" <ann@shop.test>',
        "recipients": [
            Recipient("bob@example.com", "Bob\tTab"),
            Recipient("cc@example.com", "", "cc"),
        ],
        "subject": "Ünïcode subject, 100% 'quoted' %(not)s a placeholder",
        "text": "text\\with\\backslashes\r\nnew\nlines\tand tabs \\N \\x00",
        "html": "<p>hi</p>\n",
        "reply_to": ["help@shop.test"],
        "headers": {"X-Campaign": 'spring\\"quoted"'},
        "tags": ["a", 'b "quoted" \\ {x,y}', ""],
        "metadata": {"order": "A-1", "nested": "line\nbreak \\ ü"},
        "attachments": [AttachmentDraft("a.pdf", "application/pdf", b"\x00%PDF\\x\t\n")],
    }
    return MessageDraft(**(values | fields))


def _orm_copy(message: Message) -> dict[str, list[dict]]:
    """Save, through the ORM, the same message, deliveries, attachments and events again: the
    events from the values they were written from, so that the statement's constants meet the
    model's defaults (and its `fanned_out` the rule: already, unless the client wants events);
    the rest as read back, so that every value meets the ORM's round trip."""
    copy = Message.objects.get(pk=message.pk)
    copy.pk = None
    copy.id = copy._meta.pk.get_default()
    copy.save(force_insert=True)
    for delivery in Delivery.objects.filter(message=message):
        events = list(delivery.events.all())
        delivery.pk, delivery.message = None, copy
        delivery.save(force_insert=True)
        for event in events:
            Event.objects.create(
                client=event.client,
                message=copy,
                delivery=delivery,
                type=event.type,
                recipient=event.recipient,
                reply=event.reply,
                next_attempt_at=event.next_attempt_at,
                created_at=event.created_at,
                test_mode=event.test_mode,
                fanned_out=not event.client.wants_events,
            )
    for part in Attachment.objects.filter(message=message):
        part.pk, part.message = None, copy
        part.save(force_insert=True)
    return _stored(copy)


def _stored(message: Message) -> dict[str, list[dict]]:
    def rows(queryset) -> list[dict]:
        # Every column but the keys, which differ between the two copies by construction (the
        # Message-ID header's column, message_id on messages, too).
        found = [
            {
                field.attname: getattr(obj, field.attname)
                for field in obj._meta.concrete_fields
                if field.attname not in ("id", "message_id", "delivery_id")
            }
            for obj in queryset
        ]
        for row in found:
            if "content" in row:
                row["content"] = bytes(row["content"])
        return sorted(found, key=repr)

    return {
        "message": rows(Message.objects.filter(pk=message.pk)),
        "deliveries": rows(Delivery.objects.filter(message=message)),
        "events": rows(Event.objects.filter(message=message)),
        "attachments": rows(Attachment.objects.filter(message=message)),
    }


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"send_at": timezone.now() + timedelta(hours=1)},  # scheduled
        {"recipients": [Recipient("gone@example.com"), Recipient("bob@example.com")]},
    ],
    ids=["queued", "scheduled", "one-suppressed"],
)
@pytest.mark.parametrize("test_mode", [False, True], ids=["live", "test-mode"])
@pytest.mark.parametrize("wants_events", [False, True], ids=["no webhooks", "webhooks"])
@pytest.mark.django_db(transaction=True)
def test_rows_are_what_the_orm_saves(fields, way, test_mode, wants_events):
    client = client_get_or_create(name="acme")
    Client.objects.filter(id=client.id).update(wants_events=wants_events)
    suppression_add(client_id=client.id, address="gone@example.com", reason="hard_bounce")

    [message] = messages_accept(client=client, drafts=[_draft(**fields)], test_mode=test_mode)

    ours = _stored(message)
    assert ours == _orm_copy(message)
    assert len(ours["deliveries"]) == len(ours["events"]) > 0
    assert ours["message"][0]["test_mode"] is test_mode
    assert {event["test_mode"] for event in ours["events"]} == {test_mode}
    assert {event["fanned_out"] for event in ours["events"]} == {not wants_events}
    assert ours["attachments"][0]["content"] == b"\x00%PDF\\x\t\n"
    draft = _draft()
    stored = ours["message"][0]
    assert (stored["subject"], stored["text_body"], stored["tags"], stored["metadata"]) == (
        draft.subject,
        draft.text,
        draft.tags,
        draft.metadata,
    )


@pytest.mark.django_db(transaction=True)
def test_a_few_messages_are_one_statement_that_stands_alone():
    client = client_get_or_create(name="acme")
    assert storing.COPY_FROM > 3
    drafts = [_draft(recipients=[Recipient(f"r{i}@example.com")]) for i in range(3)]

    with CaptureQueriesContext(connection) as queries:
        messages = messages_accept(client=client, drafts=drafts)

    # The suppression lookup, then everything in one statement, with no BEGIN/COMMIT around it.
    assert len(queries) == 2
    assert Delivery.objects.filter(message__in=messages).count() == 3
    assert Event.objects.filter(message__in=messages, type="accepted").count() == 3
    assert all(not m._state.adding and m.status == "queued" for m in messages)


@pytest.mark.django_db(transaction=True)
def test_many_messages_are_copied_in_one_transaction():
    client = client_get_or_create(name="acme")
    count = storing.COPY_FROM
    drafts = [_draft(recipients=[Recipient(f"r{i}@example.com")]) for i in range(count)]

    with CaptureQueriesContext(connection) as queries:
        messages = messages_accept(client=client, drafts=drafts)

    statements = [" ".join(query["sql"].split()[:2]) for query in queries]
    assert statements == [
        "SELECT address,",  # the suppressions
        "BEGIN",
        "SELECT nextval(pg_get_serial_sequence('deliveries_delivery',",  # the deliveries' ids
        "COPY deliveries_message",
        "COPY deliveries_delivery",
        "COPY deliveries_attachment",
        "WITH delivery",  # their events
        "COMMIT",
    ]
    deliveries = Delivery.objects.filter(message__in=messages)
    assert deliveries.count() == count
    assert Event.objects.filter(delivery__in=deliveries, type="accepted").count() == count
    assert Attachment.objects.filter(message__in=messages).count() == count


@pytest.mark.django_db(transaction=True)
def test_a_failing_write_leaves_nothing(way):
    client = client_get_or_create(name="acme")
    good = _draft()
    # Too long for deliveries_delivery.name (varchar 200): the delivery insert fails, and the
    # message and attachment inserts of the same statement with it.
    bad = _draft(recipients=[Recipient("x@example.com", "n" * 201)])

    with pytest.raises(Exception, match="too long"):
        messages_accept(client=client, drafts=[good, bad])

    assert not Message.objects.exists()
    assert not Attachment.objects.exists()
    assert not Event.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_it_rolls_back_with_it(way):
    client = client_get_or_create(name="acme")
    with pytest.raises(RuntimeError), transaction.atomic():
        messages_accept(client=client, drafts=[_draft()])
        raise RuntimeError("the caller's transaction fails afterwards")
    assert not Message.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_failure_inside_a_transaction_leaves_the_transaction_usable(way):
    client = client_get_or_create(name="acme")
    bad = _draft(recipients=[Recipient("x@example.com", "n" * 201)])
    with transaction.atomic():
        [kept] = messages_accept(client=client, drafts=[_draft()])
        with pytest.raises(Exception, match="too long"):
            messages_accept(client=client, drafts=[bad])
        assert Message.objects.filter(pk=kept.pk).exists()  # no "transaction is aborted"
    assert list(Message.objects.values_list("pk", flat=True)) == [kept.pk]


@pytest.mark.django_db(transaction=True)
def test_nothing_to_accept_is_no_query_and_a_message_without_recipients_is_refused(
    django_assert_num_queries,
):
    client = client_get_or_create(name="acme")
    with django_assert_num_queries(0):
        assert messages_accept(client=client, drafts=[]) == []
    with pytest.raises(ValueError, match="recipient"):
        messages_accept(client=client, drafts=[_draft(), _draft(recipients=[])])
    assert not Message.objects.exists()
