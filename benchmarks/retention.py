"""Retention: one day of history removed row by row, and one removed by dropping its partitions.

N history rows (events and attempts, half each, ``PER_DELIVERY`` of each per delivery) are
written spread evenly over D days, with ``generate_series`` in a few statements, not through the
services: the benchmark needs their volume, not their story. Then, after a checkpoint has
written them out (as an old day's pages long have been when it is purged, so that touching them
again logs whole pages, as it would), two days of equal size go:

- the second day row by row, as ``purge`` deletes what is left of the day that straddles its
  cut-off (``history_rows_delete``, in batches of one transaction each), then the VACUUM that
  row deletion leaves to do;
- the first day by ``history_purge`` itself: its partitions detached and dropped.

Each is timed, with the WAL it wrote: ``pg_current_wal_lsn()`` before and after. That is the
whole server's WAL, whatever else runs on it meanwhile; run it on a quiet server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db import connection

from benchmarks.dispatcher import insert_series
from benchmarks.stack import say
from deliveries.models import Delivery, Message
from deliveries.partitions import HISTORY_TABLES, day_start
from deliveries.services import history_partitions_ensure, history_purge
from deliveries.services.retention import history_rows_delete
from deliveries.states import DeliveryStatus, MessageStatus

#: Events, and attempts, of each delivery seeded.
PER_DELIVERY = 5
#: Rows per transaction when deleting row by row (``history_rows_delete``'s default).
BATCH = 5000
_MARK = "<retention-"

_EVENTS = f"""
INSERT INTO deliveries_event (id, client_id, message_id, delivery_id, type, recipient, attempt,
    smtp_code, enhanced_code, reply, next_attempt_at, created_at, fanned_out, test_mode)
SELECT gen_random_uuid(), m.client_id, m.id, d.id, 'deferred', d.address, i, 451, '4.7.1',
    '451 4.7.1 Greylisted, try again later', m.created_at + i * interval '1 minute',
    m.created_at + i * interval '1 second', true, false
FROM deliveries_message m
JOIN deliveries_delivery d ON d.message_id = m.id
CROSS JOIN generate_series(1, {PER_DELIVERY}) AS i
WHERE m.message_id LIKE '{_MARK}%'
"""  # noqa: S608 - constants only
_ATTEMPTS = f"""
INSERT INTO deliveries_attempt (delivery_id, number, task_id, worker, relay, started_at,
    duration_ms, smtp_code, enhanced_code, reply, outcome)
SELECT d.id, i, md5(d.id::text || '-' || i), 'general@bench', 'relay.bench.test:25',
    m.created_at + i * interval '1 second', 40 + i, 451, '4.7.1',
    '451 4.7.1 Greylisted, try again later', 'deferred'
FROM deliveries_message m
JOIN deliveries_delivery d ON d.message_id = m.id
CROSS JOIN generate_series(1, {PER_DELIVERY}) AS i
WHERE m.message_id LIKE '{_MARK}%'
"""  # noqa: S608 - constants only


@dataclass(frozen=True)
class Cost:
    seconds: float
    wal_bytes: int
    rows: int


@dataclass(frozen=True)
class RetentionResult:
    rows: int  # history rows seeded
    days: int
    seed_seconds: float
    day_rows: int  # history rows of each of the two days removed
    by_rows: Cost
    vacuum: Cost
    by_drop: Cost
    checkpointed: bool  # a checkpoint came between the seed and the measures


def run(*, client_id: int, rows: int, days: int) -> RetentionResult:
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days)
    history_partitions_ensure(today=first, ahead_days=days + 1)
    say(f"retention: writing {rows:,} history rows over {days} days")
    started = time.monotonic()
    seed(client_id=client_id, rows=rows, start=day_start(first), days=days)
    seed_seconds = time.monotonic() - started
    say(f"retention: written in {seed_seconds:.0f} s; waiting for a checkpoint")
    checkpointed = wait_for_checkpoint()
    dropped_day, deleted_day = first, first + timedelta(days=1)
    day_rows = count_between(day_start(deleted_day), day_start(deleted_day + timedelta(days=1)))
    say(f"retention: deleting the {day_rows:,} rows of {deleted_day} row by row")
    by_rows = measured(lambda: delete_day(deleted_day), rows=day_rows)
    say("retention: vacuuming what that left")
    vacuum = measured(lambda: vacuum_day(deleted_day), rows=day_rows)
    dropped_rows = count_between(day_start(dropped_day), day_start(deleted_day))
    say(f"retention: dropping the partitions of {dropped_day} ({dropped_rows:,} rows)")
    by_drop = measured(lambda: drop_day(dropped_day), rows=dropped_rows)
    return RetentionResult(
        rows=rows,
        days=days,
        seed_seconds=seed_seconds,
        day_rows=day_rows,
        by_rows=by_rows,
        vacuum=vacuum,
        by_drop=by_drop,
        checkpointed=checkpointed,
    )


def seed(*, client_id: int, rows: int, start: datetime, days: int) -> None:
    """``rows`` history rows, from ``rows / (2 * PER_DELIVERY)`` delivered messages of one
    delivery each accepted evenly over ``days`` days from ``start``."""
    count = max(rows // (2 * PER_DELIVERY), 1)
    created = (
        "%(start)s::timestamptz + (g - 1) * (%(span)s::float8 / %(count)s) * interval '1 second'"
    )
    params = {
        "count": count,
        "start": start,
        "span": days * 86400,
        "client_id": client_id,
        "delivered": DeliveryStatus.DELIVERED.value,
        "message_delivered": MessageStatus.DELIVERED.value,
    }
    message_id = f"md5('{_MARK}' || g)::uuid"
    insert_series(
        Message,
        {
            "id": message_id,
            "client_id": "%(client_id)s",
            "sender": "'Seed <seed@bench.test>'",
            "subject": "'Retention seed ' || g",
            "text_body": "'Old mail: only its history matters here. ' || g",
            "status": "%(message_delivered)s",
            "message_id": f"'{_MARK}' || g || '@bench.test>'",
            "created_at": created,
            "expires_at": f"{created} + interval '1 day'",
        },
        params,
    )
    insert_series(
        Delivery,
        {
            "message_id": message_id,
            "address": "'seed-' || g || '@bench.test'",
            "domain": "'bench.test'",
            "status": "%(delivered)s",
            "attempts": str(PER_DELIVERY),
            "last_code": "250",
            "delivered_at": created,
            "updated_at": created,
        },
        params,
    )
    with connection.cursor() as cursor:
        cursor.execute(_EVENTS)
        cursor.execute(_ATTEMPTS)
        tables = [Message._meta.db_table, Delivery._meta.db_table]
        for name in [*tables, *(table.name for table in HISTORY_TABLES)]:
            cursor.execute(f"VACUUM (ANALYZE) {name}")


def wait_for_checkpoint(*, timeout: float = 330.0) -> bool:
    """Wait until the server has completed a checkpoint since now (at most ``timeout``: one
    ``checkpoint_timeout`` of the default five minutes, and some)."""

    def checkpoints() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
            done: int = cursor.fetchone()[0]
            return done

    seen = checkpoints()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(2)
        if checkpoints() > seen:
            return True
    return False


def count_between(lower: datetime, upper: datetime) -> int:
    total = 0
    with connection.cursor() as cursor:
        for table in HISTORY_TABLES:
            cursor.execute(
                f"SELECT count(*) FROM {table.name} WHERE {table.column} >= %s"  # noqa: S608
                f" AND {table.column} < %s",
                [lower, upper],
            )
            total += cursor.fetchone()[0]
    return total


def measured(work: Callable[[], object], *, rows: int) -> Cost:
    lsn = current_wal_lsn()
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", [lsn])
        wal = int(cursor.fetchone()[0])
    return Cost(seconds=seconds, wal_bytes=wal, rows=rows)


def current_wal_lsn() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        lsn: str = cursor.fetchone()[0]
        return lsn


def delete_day(day: date) -> None:
    lower, upper = day_start(day), day_start(day + timedelta(days=1))
    for table in HISTORY_TABLES:
        history_rows_delete(table, after=lower, before=upper, batch_size=BATCH)


def vacuum_day(day: date) -> None:
    with connection.cursor() as cursor:
        for table in HISTORY_TABLES:
            cursor.execute(f"VACUUM {table.day_partition(day)}")


def drop_day(day: date) -> None:
    report = history_purge(before=day_start(day + timedelta(days=1)))
    dropped = {table.day_partition(day) for table in HISTORY_TABLES}
    if set(report.dropped) != dropped or report.rows_deleted:
        raise RuntimeError(f"the purge did not drop exactly {sorted(dropped)}: {report}")
