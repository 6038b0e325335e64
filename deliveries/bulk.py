"""One UPDATE that gives many rows different values: ``UPDATE ... FROM (VALUES ...)``.

Django's ``bulk_update`` builds a CASE expression per field and row, which cost more CPU than the
rest of a delivery; this sends the values as rows and lets Postgres join them.
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
