"""A worker's statements find a task's deliveries by key whatever the planner's statistics say.

Two cases mattered. No column statistics at all (a new database, or a server without
autovacuum): ``message_id = ANY(ids)`` was guessed to match half the table and read it whole for
every task. Stale statistics after a burst (the last ANALYZE saw no active delivery): the partial
index `delivery_due` looked empty, and the claim, start and settle statements read it, the whole
backlog, instead of the rows they name. Here the statistics are made so on purpose, and each
statement's plan must neither read the table whole nor touch `delivery_due`.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest
from django.db import connection
from django.utils import timezone
from psycopg2.extensions import AsIs

from deliveries.models import Delivery, Message
from deliveries.services import MessageDraft, Recipient, messages_accept, sending, transitions
from deliveries.states import DeliveryStatus, sources_of

pytestmark = pytest.mark.integration
BACKLOG = 10_000
TASK = 50


def copies_of(message_id: UUID, count: int) -> None:
    """``count`` copies of a message and its deliveries, in one statement (accepting that many
    would take most of the test's time)."""
    message_columns = [f.column for f in Message._meta.concrete_fields]
    delivery_columns = [f.column for f in Delivery._meta.concrete_fields if f.column != "id"]
    fresh = {"id": "gen_random_uuid()", "message_id": "'<' || gen_random_uuid() || '@copy>'"}
    message_values = [fresh.get(column, f"t.{column}") for column in message_columns]
    delivery_values = ["new.id" if c == "message_id" else f"t.{c}" for c in delivery_columns]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH new AS (
                INSERT INTO deliveries_message ({", ".join(message_columns)})
                SELECT {", ".join(message_values)}
                FROM deliveries_message t, generate_series(1, %(count)s)
                WHERE t.id = %(id)s
                RETURNING id
            )
            INSERT INTO deliveries_delivery ({", ".join(delivery_columns)})
            SELECT {", ".join(delivery_values)}
            FROM new, deliveries_delivery t WHERE t.message_id = %(id)s
            """,
            {"id": message_id, "count": count},
        )


@pytest.fixture(params=["no column statistics", "stale statistics"])
def backlog(request, acme) -> list[Delivery]:
    """``BACKLOG`` queued deliveries behind statistics of the kind named; the first ``TASK``."""
    draft = MessageDraft(
        sender="Shop <no-reply@shop.test>",
        recipients=[Recipient("ann@example.com")],
        subject="Your code",
        text="123456",
    )
    with connection.cursor() as cursor:
        if request.param == "no column statistics":
            cursor.execute("ANALYZE deliveries_delivery")  # of an empty table: none to keep
        [message] = messages_accept(client=acme.client, drafts=[draft])
        copies_of(message.id, BACKLOG - 1)
        if request.param == "stale statistics":
            cursor.execute("UPDATE deliveries_delivery SET status = 'delivered'")
            cursor.execute("ANALYZE deliveries_delivery")
            cursor.execute("UPDATE deliveries_delivery SET status = 'queued'")
    return list(Delivery.objects.order_by("id")[:TASK])


def scans_of_deliveries(sql: str) -> list[dict[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    found, nodes = [], [plan[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        if node.get("Relation Name") == "deliveries_delivery":
            found.append(node)
        nodes += node.get("Plans", [])
    return found


def assert_read_by_key(sql: str) -> None:
    scans = scans_of_deliveries(sql)
    assert scans, sql
    for node in scans:
        assert node["Node Type"] != "Seq Scan", f"deliveries read whole by:\n{sql}"
        assert node.get("Index Name") != "delivery_due", f"the backlog read by:\n{sql}"


def mogrify(sql: str, params: Any) -> str:
    with connection.cursor() as cursor:
        return cursor.cursor.mogrify(sql, params).decode()


def test_the_claim_reads_the_named_messages_only(backlog):
    ids = [str(d.message_id) for d in backlog]

    assert_read_by_key(mogrify(sending._CLAIM_SQL, {"ids": ids}))


def test_starting_reads_the_claimed_rows_only(backlog):
    params = {
        "ids": [d.id for d in backlog],
        "sources": [s.value for s in sources_of(DeliveryStatus.SENDING)],
        "lease_until": timezone.now(),
        "now": timezone.now(),
    }

    assert_read_by_key(mogrify(transitions._START_SQL, params))


def test_settling_reads_the_claimed_rows_only(backlog):
    now = timezone.now()
    rows = [
        (d.id, 1, 0, "delivered", None, 250, "2.0.0", "OK", now, now, 1, "delivered", False, "")
        for d in backlog
    ]
    values = ",".join(mogrify(transitions._SETTLE_VALUES, row) for row in rows)

    assert_read_by_key(mogrify(transitions._SETTLE_SQL, [AsIs(values)]))


def test_reading_the_recipients_reads_the_named_messages_only(backlog):
    assert_read_by_key(mogrify(sending._RECIPIENTS_SQL, [[str(d.message_id) for d in backlog]]))


def test_rolling_messages_up_reads_their_deliveries_only(backlog):
    assert_read_by_key(mogrify(transitions._REFRESH_SQL, [[str(d.message_id) for d in backlog]]))
