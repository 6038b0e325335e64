"""The history tables' partitions: ``Event`` by ``created_at`` and ``Attempt`` by ``started_at``,
one partition a day (midnight to midnight UTC), and a DEFAULT partition for any row no day's
partition takes, so that no insert ever fails for a missing partition.

Why a day: retention removes whole partitions, so a partition's width is how finely it can
cut; the partition that straddles the cut-off has its older rows deleted one by one, at most a
day's worth (a week's partitions would leave up to a week's rows to delete that way, a quarter of
a 30-day retention). The cost of many partitions is planning every partition of a query that
does not say when: the hot queries say (``since``), and read the few partitions since the mail
was accepted; a retention of 90 days keeps about a hundred partitions a table, well within what
PostgreSQL plans quickly.

Partitions are made ahead by the beat (``retention.history_partitions_ensure``) and removed by
retention (``retention.history_purge``). Their bounds are read from the catalog, never from
their names: the migration that converted a database (deliveries 0011) made month-wide ones for
its oldest rows, and those are handled the same way.

Making or removing a partition takes an exclusive lock on its table for a moment, which every
write of history waits behind: each such statement gives up after ``LOCK_TIMEOUT_MS`` rather
than hold a queue of accepts and settles behind it, and is tried again later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction
from django.db.models import Model

from deliveries.models import Attempt, Event

#: How far another machine's clock may be behind this one's. History is written by the API and
#: the workers, each with its own clock: a query for what happened after a moment looks back
#: this much further, so that it never misses a row, and still reads only a day or two.
CLOCK_SKEW = timedelta(hours=1)

#: The longest an exclusive lock for partition DDL is waited for (milliseconds).
LOCK_TIMEOUT_MS = 500

_BOUNDS = re.compile(r"^FOR VALUES FROM \((?P<lower>.+?)\) TO \((?P<upper>.+?)\)$")


def since(moment: datetime) -> datetime:
    """The earliest time history about something that happened at ``moment`` can carry."""
    return moment - CLOCK_SKEW


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


@dataclass(frozen=True)
class HistoryTable:
    """A table partitioned by range of one timestamp column."""

    model: type[Model]
    column: str

    @property
    def name(self) -> str:
        return self.model._meta.db_table

    @property
    def default_partition(self) -> str:
        return f"{self.name}_default"

    def day_partition(self, day: date) -> str:
        return f"{self.name}_p{day:%Y%m%d}"


EVENTS = HistoryTable(Event, "created_at")
ATTEMPTS = HistoryTable(Attempt, "started_at")
HISTORY_TABLES = (EVENTS, ATTEMPTS)


@dataclass(frozen=True)
class Partition:
    name: str
    is_default: bool = False
    lower: datetime | None = None  # None: unbounded (MINVALUE), or the DEFAULT partition
    upper: datetime | None = None  # None: unbounded (MAXVALUE), or the DEFAULT partition

    def overlaps(self, lower: datetime, upper: datetime) -> bool:
        if self.is_default:
            return False
        return (self.lower is None or self.lower < upper) and (
            self.upper is None or lower < self.upper
        )

    def ends_by(self, moment: datetime) -> bool:
        """Whether every row it can hold is older than ``moment``."""
        return not self.is_default and self.upper is not None and self.upper <= moment


def partitions_of(table: HistoryTable) -> list[Partition]:
    """The table's partitions as the catalog has them, oldest first, the DEFAULT one last."""
    with transaction.atomic(), connection.cursor() as cursor:
        # The bounds are printed in the session's time zone: UTC, whatever the connection says.
        cursor.execute("SET LOCAL TimeZone = 'UTC'")
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            [table.name],
        )
        rows = cursor.fetchall()
    partitions = [_partition(name, bound) for name, bound in rows]
    oldest_first = datetime.min.replace(tzinfo=UTC)
    return sorted(partitions, key=lambda p: (p.is_default, p.lower or oldest_first))


def _partition(name: str, bound: str) -> Partition:
    if bound == "DEFAULT":
        return Partition(name, is_default=True)
    match = _BOUNDS.match(bound)
    if match is None:
        raise ValueError(f"partition {name}: unexpected bound {bound!r}")
    return Partition(name, lower=_bound(match["lower"]), upper=_bound(match["upper"]))


def _bound(text: str) -> datetime | None:
    if text in ("MINVALUE", "MAXVALUE"):
        return None
    return datetime.fromisoformat(text.strip("'"))


# -- DDL: each statement waits at most LOCK_TIMEOUT_MS for its locks --------------------------


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _lock_briefly(cursor) -> None:
    cursor.execute(f"SET LOCAL lock_timeout = {int(LOCK_TIMEOUT_MS)}")


def day_partition_create(table: HistoryTable, day: date) -> int | None:
    """Make the partition of ``day``; return how many rows it took over from the DEFAULT
    partition (rows written there while the day had no partition of its own), or None when
    another process made it first.

    Raises ``django.db.OperationalError`` when a lock was not granted in time.
    """
    lower, upper = day_start(day), day_start(day + timedelta(days=1))
    name, parent, default = (
        _quote(table.day_partition(day)),
        _quote(table.name),
        _quote(table.default_partition),
    )
    column = _quote(table.column)
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_briefly(cursor)
        # Taken by CREATE ... PARTITION OF anyway; first, so that nothing lands in the DEFAULT
        # partition between the look below and the creation.
        cursor.execute(f"LOCK TABLE {parent} IN ACCESS EXCLUSIVE MODE")
        cursor.execute("SELECT to_regclass(%s)", [table.day_partition(day)])
        if cursor.fetchone()[0] is not None:
            return None
        cursor.execute(
            f"SELECT count(*) FROM {default} WHERE {column} >= %s AND {column} < %s",  # noqa: S608
            [lower, upper],
        )
        strays: int = cursor.fetchone()[0]
        if not strays:
            cursor.execute(
                f"CREATE TABLE {name} PARTITION OF {parent} FOR VALUES FROM (%s) TO (%s)",
                [lower, upper],
            )
            return 0
        # The DEFAULT partition holds rows of that day: a partition made the usual way would
        # contradict them. Made apart, given those rows, then attached.
        cursor.execute(
            f"CREATE TABLE {name} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        cursor.execute(
            f"WITH moved AS (DELETE FROM {default} WHERE {column} >= %s AND {column} < %s"  # noqa: S608
            f" RETURNING *) INSERT INTO {name} SELECT * FROM moved",
            [lower, upper],
        )
        cursor.execute(
            f"ALTER TABLE {parent} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)",
            [lower, upper],
        )
        return strays


def default_partition_create(table: HistoryTable) -> bool:
    """Make the DEFAULT partition; False when another process made it first."""
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_briefly(cursor)
        cursor.execute(f"LOCK TABLE {_quote(table.name)} IN ACCESS EXCLUSIVE MODE")
        cursor.execute("SELECT to_regclass(%s)", [table.default_partition])
        if cursor.fetchone()[0] is not None:
            return False
        cursor.execute(
            f"CREATE TABLE {_quote(table.default_partition)} PARTITION OF {_quote(table.name)}"
            " DEFAULT"
        )
        return True


def partition_drop(table: HistoryTable, partition: Partition) -> None:
    """Detach the partition and drop it, in one short transaction.

    Raises ``django.db.OperationalError`` when a lock was not granted in time.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_briefly(cursor)
        cursor.execute(
            f"ALTER TABLE {_quote(table.name)} DETACH PARTITION {_quote(partition.name)}"
        )
        cursor.execute(f"DROP TABLE {_quote(partition.name)}")
