"""Retention, and the history partitions it relies on (``deliveries.partitions``).

- ``history_partitions_ensure`` (the beat, hourly by default) makes each history table's day
  partitions from today to ``MAILHUB_HISTORY_PARTITIONS_AHEAD_DAYS`` ahead.
- ``history_purge`` (``purge``) removes the history older than a cut-off: a partition whose
  every row is older is detached and dropped whole; the older rows of the partition that
  straddles the cut-off, and those of the DEFAULT partition, are deleted one by one. It goes by
  time alone: a message still waiting for a retry keeps its newer events and attempts only.
- ``messages_purge`` (``purge``, after it) deletes finished messages accepted before the
  cut-off with what they still own: deliveries, attachments, and their later history.

No constraint in the database refers to a history row (webhooks 0004 took the one there was
away), so whatever refers to an event is deleted here first, as its ``on_delete`` says. The
engine does not know who that is (the webhooks' notifications); Django's relations do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from django.db import OperationalError, models, transaction
from django.db.models import QuerySet
from django.dispatch import Signal
from django.utils import timezone

from deliveries import conf
from deliveries.models import Attachment, Attempt, Delivery, Event, Message
from deliveries.partitions import (
    EVENTS,
    HISTORY_TABLES,
    HistoryTable,
    Partition,
    day_partition_create,
    day_start,
    default_partition_create,
    partition_drop,
    partitions_of,
    since,
)
from deliveries.selectors import history_partitions_ending_by, messages_purgeable
from deliveries.states import ACTIVE

logger = logging.getLogger(__name__)

#: Sent by ``history_purge`` once mail's history older than ``before`` (a keyword argument) is
#: gone. Apps that keep records of their own about that mail (the webhooks' log of requests)
#: delete theirs older than ``before`` and return ``(what, how many)`` for the report.
history_purged = Signal()

_LOCK_NOT_AVAILABLE = "55P03"
#: A partition whose lock was not granted is tried this many times, this far apart, per purge.
DROP_TRIES = 5
DROP_PAUSE_SECONDS = 1.0


def _lock_not_granted(exc: OperationalError) -> bool:
    return getattr(exc.__cause__, "pgcode", None) == _LOCK_NOT_AVAILABLE


# -- partitions ahead ------------------------------------------------------------------------


@dataclass
class PartitionsReport:
    created: list[str] = field(default_factory=list)
    moved: int = 0  # rows the new partitions took over from the DEFAULT partition
    busy: list[str] = field(default_factory=list)  # a lock not granted in time: next run

    def __str__(self) -> str:
        text = f"created {len(self.created)} partition(s) {', '.join(self.created)}".rstrip()
        if self.moved:
            text += f"; {self.moved} row(s) moved into them from the DEFAULT partitions"
        if self.busy:
            text += f"; not created, their tables were busy: {', '.join(self.busy)}"
        return text


def history_partitions_ensure(
    *, today: date | None = None, ahead_days: int | None = None
) -> PartitionsReport:
    """Make every history table's missing day partitions from ``today`` (UTC) to
    ``ahead_days`` days ahead, and its DEFAULT partition should it be missing.

    Safe to run any time, and concurrently (each partition is made under its table's lock, and
    only if it still does not exist); one whose table stayed locked is left for the next run
    (``PartitionsReport.busy``).
    """
    today = today or timezone.now().astimezone(UTC).date()
    ahead = conf.history_partitions_ahead_days() if ahead_days is None else ahead_days
    report = PartitionsReport()
    for table in HISTORY_TABLES:
        existing = partitions_of(table)
        wanted: list[tuple[str, Callable[[], int | None]]] = []
        if not any(partition.is_default for partition in existing):
            wanted.append((table.default_partition, _default_maker(table)))
        for offset in range(ahead + 1):
            day = today + timedelta(days=offset)
            lower, upper = day_start(day), day_start(day + timedelta(days=1))
            if not any(partition.overlaps(lower, upper) for partition in existing):
                wanted.append((table.day_partition(day), _day_maker(table, day)))
        for name, make in wanted:
            try:
                moved = make()
            except OperationalError as exc:
                if not _lock_not_granted(exc):
                    raise
                report.busy.append(name)
                continue
            if moved is not None:  # None: another run made it meanwhile
                report.created.append(name)
                report.moved += moved
    return report


def _day_maker(table: HistoryTable, day: date) -> Callable[[], int | None]:
    return lambda: day_partition_create(table, day)


def _default_maker(table: HistoryTable) -> Callable[[], int | None]:
    def make() -> int | None:
        return 0 if default_partition_create(table) else None

    return make


# -- history ---------------------------------------------------------------------------------


@dataclass
class HistoryPurge:
    dropped: list[str] = field(default_factory=list)  # partitions dropped whole
    busy: list[str] = field(default_factory=list)  # left for the next purge: locks not granted
    rows_deleted: int = 0  # history rows deleted one by one
    dependents_deleted: int = 0  # rows that referred to the events removed (notifications)
    others: list[tuple[str, int]] = field(default_factory=list)  # from `history_purged`


def history_purge(
    *,
    before: datetime,
    batch_size: int = 5000,
    on_batch: Callable[[int], object] | None = None,
) -> HistoryPurge:
    """Remove the events and attempts older than ``before``: whole partitions where they can,
    the rest in batches of ``batch_size`` rows, one short transaction each; then tell the apps
    that keep records of their own (``history_purged``). Safe to interrupt and run again."""
    report = HistoryPurge()
    busy_tables = set()
    for table, partition in history_partitions_ending_by(before=before):
        if table is EVENTS:
            report.dependents_deleted += event_dependents_delete(
                Event.objects.filter(_within(table, partition.lower, partition.upper))
            )
        if _drop_patiently(table, partition):
            report.dropped.append(partition.name)
        else:
            report.busy.append(partition.name)
            busy_tables.add(table)
    for table in HISTORY_TABLES:
        if table in busy_tables:
            continue  # its rows would be deleted one by one: the next purge drops it instead
        rows, dependents = history_rows_delete(
            table, before=before, batch_size=batch_size, on_batch=on_batch
        )
        report.rows_deleted += rows
        report.dependents_deleted += dependents
    for _receiver, result in history_purged.send(sender=Event, before=before):
        report.others.append(cast(tuple[str, int], result))
    return report


def _within(table: HistoryTable, lower: datetime | None, upper: datetime | None) -> models.Q:
    where = models.Q()
    if lower is not None:
        where &= models.Q(**{f"{table.column}__gte": lower})
    if upper is not None:
        where &= models.Q(**{f"{table.column}__lt": upper})
    return where


def _drop_patiently(table: HistoryTable, partition: Partition) -> bool:
    for attempt in range(DROP_TRIES):
        try:
            partition_drop(table, partition)
            return True
        except OperationalError as exc:
            if not _lock_not_granted(exc):
                raise
            logger.info("partition %s: its table is busy (try %d)", partition.name, attempt + 1)
            time.sleep(DROP_PAUSE_SECONDS)
    return False


def history_rows_delete(
    table: HistoryTable,
    *,
    before: datetime,
    after: datetime | None = None,
    batch_size: int = 5000,
    on_batch: Callable[[int], object] | None = None,
) -> tuple[int, int]:
    """Delete the rows of ``table`` older than ``before`` (and not older than ``after``), one by
    one, ``batch_size`` a transaction; return (rows, their dependents) deleted.

    After ``history_purge`` dropped the partitions that end by ``before``, the condition leaves
    only the partition that straddles it and the DEFAULT one to read. The batches walk the
    primary key in order, so each reads on from where the last one stopped.
    """
    model = table.model
    window = _within(table, after, before)
    deleted = dependents = 0
    last = None
    while True:
        with transaction.atomic():
            candidates = model._base_manager.filter(window)
            if last is not None:
                candidates = candidates.filter(id__gt=last)
            ids = list(candidates.order_by("id").values_list("id", flat=True)[:batch_size])
            if not ids:
                return deleted, dependents
            doomed = model._base_manager.filter(window, id__in=ids)
            if table is EVENTS:
                dependents += event_dependents_delete(doomed)
            count = doomed._raw_delete(doomed.db)
        deleted += count
        last = ids[-1]
        if on_batch is not None:
            on_batch(count)


def event_dependents_delete(events: QuerySet[Any]) -> int:
    """Delete what refers to these events, as each reference's ``on_delete`` says; return how
    many rows. In the caller's transaction, before the events go."""
    deleted = 0
    for relation in Event._meta.related_objects:
        if relation.on_delete is models.DO_NOTHING:
            continue
        model = cast(type[models.Model], relation.related_model)
        if relation.on_delete is not models.CASCADE:
            raise NotImplementedError(
                f"{model.__name__}.{relation.field.name}: retention deletes the rows that "
                "refer to an event (CASCADE) and nothing else"
            )
        referring = model._base_manager.filter(
            **{f"{relation.field.name}__in": events.values("pk")}
        )
        deleted += referring.delete()[0]
    return deleted


# -- messages --------------------------------------------------------------------------------


def messages_purge(
    *,
    created_before: datetime,
    batch_size: int = 1000,
    client: str = "",
    on_batch: Callable[[int], object] | None = None,
) -> int:
    """Delete finished messages accepted before ``created_before`` with everything they own
    (deliveries, attempts, events, attachments), ``batch_size`` messages per transaction.

    Return how many messages were deleted. Short transactions keep locks brief and let the
    purge be interrupted and run again at any point.
    """
    total = 0
    while True:
        deleted = _purge_batch(created_before=created_before, batch_size=batch_size, client=client)
        if not deleted:
            return total
        total += deleted
        if on_batch is not None:
            on_batch(deleted)


def _purge_batch(*, created_before: datetime, batch_size: int, client: str) -> int:
    with transaction.atomic():
        # Locked, and re-checked for active deliveries: a message an operator is retrying right
        # now is skipped, not deleted under the worker's feet.
        rows = list(
            messages_purgeable(created_before=created_before, client=client)
            .exclude(deliveries__status__in=sorted(ACTIVE))
            .order_by("created_at")
            .select_for_update(skip_locked=True)
            .values_list("id", "created_at")[:batch_size]
        )
        if not rows:
            return 0
        ids = [message_id for message_id, _ in rows]
        # A message's history is no older than the message: only the partitions since the
        # oldest of the batch are read.
        oldest = since(rows[0][1])
        # Children first, each one DELETE. Django's cascading delete would first load every
        # message (bodies and all) and every delivery into memory.
        events = Event.objects.filter(message_id__in=ids, created_at__gte=oldest)
        event_dependents_delete(events)
        events._raw_delete(events.db)
        # By the deliveries' ids, not a join: a DELETE with a join is made into `id IN (...)`,
        # which would read every partition.
        attempts = Attempt.objects.filter(
            delivery_id__in=Delivery.objects.filter(message_id__in=ids).values("id"),
            started_at__gte=oldest,
        )
        attempts._raw_delete(attempts.db)
        Attachment.objects.filter(message_id__in=ids).delete()
        deliveries = Delivery.objects.filter(message_id__in=ids)
        deliveries._raw_delete(deliveries.db)
        messages = Message.objects.filter(id__in=ids)
        return messages._raw_delete(messages.db)
