"""Many rows in one statement, assembled by psycopg2 instead of Django's compiler.

``update_from_values``: one UPDATE that gives many rows different values, ``UPDATE ... FROM
(VALUES ...)``. Django's ``bulk_update`` builds a CASE expression per field and row, which cost
more CPU than the rest of a delivery; this sends the values as rows and lets Postgres join them.

``insert_values``: the ``INSERT ... VALUES`` of plain rows, for a statement that writes several
tables at once (``deliveries.services.accept``).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection
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


def insert_values(cursor, *, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> bytes:
    """``INSERT INTO table (columns) VALUES (...), ...`` with every value quoted by psycopg2, as
    bytes to execute without parameters (a ``%`` in a value is then no placeholder).

    ``cursor`` is a psycopg2 cursor (for its quoting). A value is whatever psycopg2 adapts, as
    stored: a JSON column's value wrapped in ``connection.ops.adapt_json_value``.
    """
    # One mogrify over all rows: a Python-level call per row cost as much as the quoting.
    row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    values = cursor.mogrify(", ".join([row] * len(rows)), [value for r in rows for value in r])
    # Identifiers come from code, never from input; every value is quoted above.
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ".encode() + values  # noqa: S608
