"""One UPDATE that gives many rows different values: ``UPDATE ... FROM (VALUES ...)``.

Django's ``bulk_update`` builds a CASE expression per field and row, which cost more CPU than the
rest of a delivery; this sends the values as rows and lets Postgres join them.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, connections, router
from django.db.models import Model
from psycopg2.extras import execute_values


def update_from_values(
    *,
    model: type[Model],
    columns: dict[str, str],
    rows: Sequence[tuple],
    condition: str = "",
    returning: str = "",
) -> list[tuple]:
    """Update ``model`` rows matched on ``id`` (the first value of each row).

    ``columns`` maps each further value's column to its SQL type, in row order. ``condition`` is
    extra SQL on the target row ``t`` and the values ``v`` (e.g. ``"t.status = 'sending'"``),
    ``returning`` a column list of ``t``; the returned rows are the ones updated.
    """
    if not rows:
        return []
    names = ["id", *columns]
    types = ["bigint", *columns.values()]
    # Identifiers come from code, never from input; every value travels as a parameter.
    sql = (
        f"UPDATE {model._meta.db_table} AS t SET "  # noqa: S608
        + ", ".join(f"{name} = v.{name}" for name in columns)
        + f" FROM (VALUES %s) AS v({', '.join(names)}) WHERE t.id = v.id"
        + (f" AND {condition}" if condition else "")
        + (f" RETURNING {returning}" if returning else "")
    )
    template = "(" + ", ".join(f"%s::{sql_type}" for sql_type in types) + ")"
    with connection.cursor() as cursor:
        result = execute_values(cursor.cursor, sql, rows, template=template, fetch=bool(returning))
    return result or []


def insert_objects(objects: Sequence[Model], *, page_size: int = 1000) -> None:
    """``bulk_create`` for the accept path: the same rows in one ``INSERT ... VALUES`` per page,
    assembled by psycopg2 instead of Django's compiler (measured: accepting one message took
    1,007 µs of CPU with ``bulk_create``, 837 µs with this).

    All objects are of one model. A primary key the database generates is set on each object,
    as ``bulk_create`` does on Postgres. Field defaults and ``pre_save`` (``auto_now``) apply.
    """
    if not objects:
        return
    meta = type(objects[0])._meta
    generated = meta.pk if meta.pk.db_returning and objects[0].pk is None else None
    fields = [field for field in meta.concrete_fields if field is not generated]
    sql = (
        f"INSERT INTO {meta.db_table} ({', '.join(f.column for f in fields)}) VALUES %s"  # noqa: S608
        + (f" RETURNING {generated.column}" if generated else "")
    )
    # The connection itself, not the `connection` proxy: every attribute read through the proxy
    # costs a thread-local lookup, and preparing a value reads several.
    database = connections[router.db_for_write(type(objects[0]))]
    rows = [
        tuple(field.get_db_prep_save(field.pre_save(obj, True), database) for field in fields)
        for obj in objects
    ]
    with database.cursor() as cursor:
        returned = execute_values(
            cursor.cursor, sql, rows, page_size=page_size, fetch=generated is not None
        )
    if generated is not None:
        for obj, (pk,) in zip(objects, returned, strict=True):
            setattr(obj, generated.attname, pk)
    for obj in objects:
        obj._state.adding = False
        obj._state.db = database.alias
