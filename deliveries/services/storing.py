"""Writing accepted mail: messages, deliveries, attachments and the deliveries' first events.

Two ways, one result (tests/integration/test_accept_statement.py holds both to the ORM's rows):

- a few messages (a single send) go in ONE data-modifying statement, its own transaction: one
  round trip (measured against a transaction with an INSERT per table, for one message: 450
  instead of 985 µs of the caller's CPU, 590 instead of 870 µs of Postgres's);
- many (a batch) go through ``COPY``, one per table in one transaction: Postgres parses each
  value once with no statement to plan, Python writes text instead of quoting value by value
  (measured in batches of 500, per message: 65 instead of 80-95 µs of the caller's CPU, 85-90
  instead of 137 µs of Postgres's).

Either way the events are written by SQL from the stored deliveries, so their columns and
constants are in one place, and the foreign keys are checked when every row is there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from django.db import connection, transaction

from accounts.models import Client
from deliveries.bulk import copy_rows, insert_values
from deliveries.models import Message
from deliveries.states import EVENT_OF_CREATION, DeliveryStatus

S = DeliveryStatus

#: From this many messages on, COPY: below, its six round trips cost more than it saves (measured:
#: the single statement cheaper at 5, about even at 10 and 20, COPY far cheaper at 500).
COPY_FROM = 10


class DeliveryRow(NamedTuple):
    """A new ``deliveries_delivery`` row; the field names are its columns (but ``id``)."""

    message_id: UUID
    address: str
    domain: str
    name: str
    kind: str
    status: str
    next_attempt_at: datetime | None
    last_reply: str
    updated_at: datetime
    attempts: int = 0
    relay_failures: int = 0
    last_code: int | None = None
    last_enhanced_code: str = ""
    delivered_at: datetime | None = None
    lost_attempts: int = 0
    cancel_requested: bool = False
    relay_message_id: str = ""


MESSAGE_COLUMNS = (
    "id", "client_id", "sender", "reply_to", "subject", "text_body", "html_body", "headers",
    "priority", "status", "tags", "metadata", "template_name", "message_id", "created_at",
    "send_at", "expires_at", "test_mode", "unsubscribe",
)  # fmt: skip
ATTACHMENT_COLUMNS = ("message_id", "filename", "content_type", "content", "content_id", "size")

_EVENT_TYPE = " ".join(
    f"WHEN '{status}' THEN '{event}'" for status, event in EVENT_OF_CREATION.items()
)
# Each new delivery's event, from the rows of `delivery` (a WITH query the caller provides). The
# columns are all of deliveries_event's; the constants are its model's defaults. Written already
# fanned out when the client has no webhook endpoint to tell (`Client.wants_events`).
_EVENTS_FROM_DELIVERIES = f"""
INSERT INTO deliveries_event (id, client_id, message_id, delivery_id, type, recipient, attempt,
    smtp_code, enhanced_code, reply, next_attempt_at, created_at, fanned_out, test_mode)
SELECT gen_random_uuid(), %(client)s, message_id, id, CASE status {_EVENT_TYPE} END, address, 0,
    NULL, '', last_reply, CASE WHEN status = '{S.SCHEDULED}' THEN next_attempt_at END, %(now)s,
    NOT (SELECT wants_events FROM {Client._meta.db_table} WHERE id = %(client)s), %(test_mode)s
FROM delivery
"""  # noqa: S608 - built from the constants above only
_DELIVERY_COLUMNS_FOR_EVENTS = "id, message_id, address, status, last_reply, next_attempt_at"
_COPIED_DELIVERIES = (
    f"WITH delivery AS (SELECT {_DELIVERY_COLUMNS_FOR_EVENTS} FROM deliveries_delivery"  # noqa: S608
    " WHERE id = ANY(%(ids)s))"
)
_NEW_DELIVERY_IDS = (
    "SELECT nextval(pg_get_serial_sequence('deliveries_delivery', 'id'))"
    " FROM generate_series(1, %s)"
)


def accepted_store(
    *,
    client: Client,
    now: datetime,
    messages: Sequence[Message],
    deliveries: Sequence[DeliveryRow],
    attachments: Sequence[tuple[Any, ...]],
) -> None:
    """Insert the messages (built, not yet saved), their deliveries and attachments (rows in
    ``DeliveryRow`` and ``ATTACHMENT_COLUMNS`` order) and one event per delivery, all or none.
    In a caller's transaction, a savepoint keeps a failure from spoiling the rest of it."""
    # JSON as its text and the id as a string (Postgres casts both to the column's type):
    # psycopg2's adapters for them are Python code, a fifth of quoting a batch's messages.
    message_rows = [
        (str(m.id), client.id, m.sender, json.dumps(m.reply_to), m.subject, m.text_body,
         m.html_body, json.dumps(m.headers), m.priority, m.status, m.tags,
         json.dumps(m.metadata), m.template_name, m.message_id, m.created_at, m.send_at,
         m.expires_at, m.test_mode, m.unsubscribe)
        for m in messages
    ]  # fmt: skip
    # One accept is of one mode (its key's), so the events' flag is one value.
    modes = {m.test_mode for m in messages}
    if len(modes) > 1:
        raise ValueError("the messages of one accept are all of one mode")
    events = {"client": client.id, "now": now, "test_mode": modes.pop() if modes else False}
    if len(messages) >= COPY_FROM:
        with transaction.atomic():
            _copy(message_rows, deliveries, attachments, events)
    else:
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            _in_one_statement(message_rows, deliveries, attachments, events)


def _in_one_statement(
    message_rows: Sequence[tuple[Any, ...]],
    deliveries: Sequence[DeliveryRow],
    attachments: Sequence[tuple[Any, ...]],
    events: dict[str, Any],
) -> None:
    tables = [
        ("message", "deliveries_message", MESSAGE_COLUMNS, message_rows, ""),
        ("attachment", "deliveries_attachment", ATTACHMENT_COLUMNS, attachments, ""),
        ("delivery", "deliveries_delivery", DeliveryRow._fields, deliveries,
         f" RETURNING {_DELIVERY_COLUMNS_FOR_EVENTS}"),
    ]  # fmt: skip
    with connection.cursor() as cursor:
        quoting = cursor.cursor
        inserts = [
            name.encode()
            + b" AS ("
            + insert_values(quoting, table=table, columns=columns, rows=rows)
            + returning.encode()
            + b")"
            for name, table, columns, rows, returning in tables
            if rows
        ]
        cursor.execute(
            b"WITH " + b", ".join(inserts) + b" " + quoting.mogrify(_EVENTS_FROM_DELIVERIES, events)
        )


def _copy(
    message_rows: Sequence[tuple[Any, ...]],
    deliveries: Sequence[DeliveryRow],
    attachments: Sequence[tuple[Any, ...]],
    events: dict[str, Any],
) -> None:
    with connection.cursor() as cursor:
        # The deliveries' ids up front, as their events need them.
        cursor.execute(_NEW_DELIVERY_IDS, [len(deliveries)])
        ids = [delivery_id for (delivery_id,) in cursor.fetchall()]
        copy_rows(cursor, table="deliveries_message", columns=MESSAGE_COLUMNS, rows=message_rows)
        copy_rows(
            cursor,
            table="deliveries_delivery",
            columns=("id", *DeliveryRow._fields),
            rows=[(delivery_id, *row) for delivery_id, row in zip(ids, deliveries, strict=True)],
        )
        if attachments:
            copy_rows(
                cursor, table="deliveries_attachment", columns=ATTACHMENT_COLUMNS, rows=attachments
            )
        cursor.execute(_COPIED_DELIVERIES + _EVENTS_FROM_DELIVERIES, {**events, "ids": ids})
