"""The dispatcher's tick with nothing due, before and after a million rows it must never read.

The rows are what a busy Mailhub accumulates: finished deliveries (outside the partial index
``delivery_due``) and deferred ones due years from now (inside it, past the end of every range
the tick scans). They are written with ``generate_series`` in two statements, not through the
services: the benchmark needs their volume, not their history (no events, no attempts).
"""

from __future__ import annotations

import time
from typing import Any

from django.db import connection, transaction
from django.db.models import Model
from django.test.utils import CaptureQueriesContext

from deliveries.dispatcher import deliveries_dispatch
from deliveries.models import Delivery, Message
from deliveries.states import DeliveryStatus, MessageStatus


def tick_seconds(*, repeats: int, warm_up: int = 3) -> list[float]:
    """Wall-clock seconds of ``repeats`` dispatcher ticks, after ``warm_up`` untimed ones (the
    first reads the index from disk); each must find nothing due."""
    times = []
    for _ in range(warm_up + repeats):
        started = time.perf_counter()
        report = deliveries_dispatch()
        times.append(time.perf_counter() - started)
        if report.skipped or report.touched:
            raise RuntimeError(
                f"a tick was not an empty one (skipped={report.skipped}, "
                f"touched={report.touched}): is another dispatcher running on this database?"
            )
    return times[warm_up:]


def due_query_plan() -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the query a tick runs to find due deliveries, taken from a
    real tick, so that it is the dispatcher's query whatever shape it has today."""
    with CaptureQueriesContext(connection) as queries:
        deliveries_dispatch()
    due = [
        query["sql"]
        for query in queries.captured_queries
        if 'FROM "deliveries_delivery"' in query["sql"] and "FOR UPDATE" in query["sql"]
    ]
    if not due:
        raise RuntimeError("no SELECT ... FOR UPDATE on deliveries_delivery in a tick")
    # ANALYZE runs the query, and its FOR UPDATE would lock what it found: in a transaction
    # that is rolled back (it finds nothing anyway, nothing is due).
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {due[0]}")
        plan = "\n".join(line for (line,) in cursor.fetchall())
        transaction.set_rollback(True)
    return plan


def insert_series(model: type[Model], expressions: dict[str, str], params: dict[str, Any]) -> None:
    """INSERT ... SELECT over ``generate_series(1, %(count)s) AS g``: each column from its SQL
    expression in terms of ``g``, or else the field's default, so that a column added to the
    model later needs no change here."""
    columns, values = [], []
    params = dict(params)
    for field in model._meta.concrete_fields:
        if field.column in expressions:
            value = expressions[field.column]
        elif field.primary_key and field.get_internal_type() in ("AutoField", "BigAutoField"):
            continue  # the sequence numbers them
        else:
            name = f"default_{field.column}"
            params[name] = field.get_db_prep_save(field.get_default(), connection)
            value = f"CAST(%({name})s AS {field.db_type(connection)})"
        columns.append(connection.ops.quote_name(field.column))
        values.append(value)
    table = connection.ops.quote_name(model._meta.db_table)
    statement = (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - names from the model
        f"SELECT {', '.join(values)} FROM generate_series(1, %(count)s) AS g"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def seed_finished(*, client_id: int, count: int, deferred_every: int = 10) -> None:
    """``count`` messages of one delivery each: every ``deferred_every``-th deferred until
    about ten years from now, the others delivered."""
    deferred = f"mod(g, {int(deferred_every)}) = 0"
    created = "now() - interval '14 days' + g * interval '1 second'"
    params = {
        "count": count,
        "client_id": client_id,
        "delivered": DeliveryStatus.DELIVERED.value,
        "deferred": DeliveryStatus.DEFERRED.value,
        "message_delivered": MessageStatus.DELIVERED.value,
        "message_deferred": MessageStatus.DEFERRED.value,
    }
    uuid_of_g = "md5('bench-seed-' || g)::uuid"
    with transaction.atomic():
        insert_series(
            Message,
            {
                "id": uuid_of_g,
                "client_id": "%(client_id)s",
                "sender": "'Seed <seed@bench.test>'",
                "subject": "'Seed message ' || g",
                "text_body": "'A short body: the dispatcher never reads it. ' || g",
                "status": f"CASE WHEN {deferred} THEN %(message_deferred)s "
                "ELSE %(message_delivered)s END",
                "message_id": "'<seed-' || g || '@bench.test>'",
                "created_at": created,
                "expires_at": f"CASE WHEN {deferred} THEN now() + interval '3660 days' "
                f"ELSE {created} + interval '1 hour' END",
            },
            params,
        )
        insert_series(
            Delivery,
            {
                "message_id": uuid_of_g,
                "address": "'seed-' || g || '@bench.test'",
                "status": f"CASE WHEN {deferred} THEN %(deferred)s ELSE %(delivered)s END",
                "attempts": "1",
                "next_attempt_at": f"CASE WHEN {deferred} "
                "THEN now() + interval '3650 days' + g * interval '1 second' END",
                "last_code": f"CASE WHEN {deferred} THEN 451 ELSE 250 END",
                "delivered_at": f"CASE WHEN {deferred} THEN NULL "
                f"ELSE {created} + interval '1 second' END",
                "updated_at": "now()",
            },
            params,
        )
    # What autovacuum would do soon after: statistics for the planner, a visibility map.
    with connection.cursor() as cursor:
        for model in (Message, Delivery):
            cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(model._meta.db_table)}")
