"""The history partitions and retention on the real Postgres: the beat's partitions ahead, rows
of a day without a partition, and `purge` dropping whole days, deleting the rest row by row,
with the notifications and the webhook log that go with them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, timedelta
from io import StringIO
from uuid import UUID

import psycopg2
import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from deliveries.models import Attempt, Event, Message
from deliveries.partitions import (
    ATTEMPTS,
    EVENTS,
    HISTORY_TABLES,
    Partition,
    day_partition_create,
    day_start,
    partition_drop,
    partitions_of,
)
from deliveries.services import history_partitions_ensure, history_purge, retention
from deliveries.states import DeliveryStatus
from tests.support.ops import seed_message_at
from tests.support.workers import database_url
from webhooks.models import Endpoint, Notification, WebhookAttempt

pytestmark = pytest.mark.integration
S = DeliveryStatus


def today() -> date:
    return timezone.now().astimezone(UTC).date()


def history_of(message: Message) -> tuple[list[Event], list[Attempt]]:
    return (
        list(Event.objects.filter(message=message)),
        list(Attempt.objects.filter(delivery__message=message)),
    )


def partition_holding(table: str, row_id: UUID | int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {table} WHERE id = %s", [row_id])
        return cursor.fetchone()[0]


def partition_names() -> set[str]:
    return {partition.name for table in HISTORY_TABLES for partition in partitions_of(table)}


def day_partitions(day: date) -> set[str]:
    return {table.day_partition(day) for table in HISTORY_TABLES}


@pytest.fixture
def past_week(db) -> date:
    """Day partitions for the past week too, as a database a week old has them."""
    history_partitions_ensure(today=today() - timedelta(days=7), ahead_days=7)
    return today() - timedelta(days=7)


def test_the_migration_made_today_the_week_ahead_and_a_default_partition(db):
    names = partition_names()

    for offset in range(8):
        assert day_partitions(today() + timedelta(days=offset)) <= names
    assert {EVENTS.default_partition, ATTEMPTS.default_partition} <= names


def test_the_beat_makes_the_missing_days_ahead_once(db):
    far = today() + timedelta(days=30)

    first = history_partitions_ensure(today=far, ahead_days=2)
    again = history_partitions_ensure(today=far, ahead_days=2)

    wanted = set().union(*(day_partitions(far + timedelta(days=n)) for n in range(3)))
    assert set(first.created) == wanted and not first.busy and first.moved == 0
    assert again.created == []
    assert wanted <= partition_names()


def test_a_partition_another_run_made_meanwhile_is_left_alone(db):
    day = today() + timedelta(days=60)

    assert day_partition_create(EVENTS, day) == 0
    assert day_partition_create(EVENTS, day) is None


def test_a_row_whose_day_has_no_partition_lands_in_the_default_one_and_moves_later(acme):
    day = today() + timedelta(days=40)
    message = seed_message_at(acme.client, day_start(day) + timedelta(hours=10))
    events, attempts = history_of(message)
    assert {partition_holding("deliveries_event", e.id) for e in events} == {
        EVENTS.default_partition
    }

    report = history_partitions_ensure(today=day, ahead_days=0)

    assert report.moved == len(events) + len(attempts)
    assert {partition_holding("deliveries_event", e.id) for e in events} == {
        EVENTS.day_partition(day)
    }
    assert {partition_holding("deliveries_attempt", a.id) for a in attempts} == {
        ATTEMPTS.day_partition(day)
    }
    # The partition made apart and attached is like the others: keyed, indexed, constrained.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_indexes WHERE tablename = %s", [EVENTS.day_partition(day)]
        )
        indexes = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM pg_indexes WHERE tablename = %s",
            [EVENTS.day_partition(today())],
        )
        assert indexes == cursor.fetchone()[0]


def test_purge_drops_the_days_before_the_cutoff_and_deletes_the_older_rows_of_its_day(
    acme, past_week
):
    day = today() - timedelta(days=5)
    cutoff = day_start(day + timedelta(days=1)) + timedelta(hours=12)
    whole_day = seed_message_at(acme.client, day_start(day) + timedelta(hours=10))
    same_day_before = seed_message_at(acme.client, cutoff - timedelta(hours=10))
    same_day_after = seed_message_at(acme.client, cutoff + timedelta(hours=8))
    no_partition = seed_message_at(acme.client, day_start(day - timedelta(days=60)))
    recent = seed_message_at(acme.client, timezone.now())
    endpoint = Endpoint.objects.create(client=acme.client, url="https://hooks.test/", secret="s")
    for event in Event.objects.all():
        Notification.objects.create(endpoint=endpoint, event=event, created_at=event.created_at)
    WebhookAttempt.objects.create(
        endpoint=endpoint, started_at=cutoff - timedelta(days=1), duration_ms=5, succeeded=True
    )
    WebhookAttempt.objects.create(
        endpoint=endpoint, started_at=timezone.now(), duration_ms=5, succeeded=True
    )
    gone = [whole_day, same_day_before, no_partition]
    kept = [same_day_after, recent]
    rows_one_by_one = sum(
        len(rows) for m in (same_day_before, no_partition) for rows in history_of(m)
    )
    notified_gone = Notification.objects.filter(event__message__in=gone).count()
    expected_drops = {
        p.name for table in HISTORY_TABLES for p in partitions_of(table) if p.ends_by(cutoff)
    }
    assert day_partitions(day) <= expected_drops and day_partitions(past_week) <= expected_drops

    report = history_purge(before=cutoff, batch_size=1)

    assert set(report.dropped) == expected_drops and not report.busy
    assert not expected_drops & partition_names()
    assert report.rows_deleted == rows_one_by_one
    assert report.dependents_deleted == notified_gone
    assert report.others == [("webhook requests logged", 1)]
    for message in gone:
        assert history_of(message) == ([], [])
    for message in kept:
        events, attempts = history_of(message)
        assert events and attempts
        assert Notification.objects.filter(event__in=events).count() == len(events)
    assert Notification.objects.count() == Event.objects.count()
    assert [attempt.started_at > cutoff for attempt in WebhookAttempt.objects.all()] == [True]
    # History goes by time alone; the messages are the second half of `purge`.
    assert Message.objects.count() == 5


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_the_purge_command_drops_old_days_then_deletes_old_finished_messages(
    acme, globex, past_week
):
    when = day_start(today() - timedelta(days=5))
    old = seed_message_at(acme.client, when + timedelta(hours=1))
    other = seed_message_at(globex.client, when + timedelta(hours=2))
    fresh = seed_message_at(acme.client, timezone.now())

    text = run("purge", "--older-than", "3d")

    assert text.startswith("Deleted 2 finished messages accepted before")
    assert "History: dropped" in text and EVENTS.day_partition(past_week) in text
    assert not day_partitions(today() - timedelta(days=5)) & partition_names()
    assert list(Message.objects.values_list("id", flat=True)) == [fresh.id]
    assert history_of(old) == history_of(other) == ([], [])


def test_purge_for_one_client_deletes_its_messages_history_and_drops_nothing(
    acme, globex, past_week
):
    when = day_start(today() - timedelta(days=5)) + timedelta(hours=1)
    old = seed_message_at(acme.client, when)
    other = seed_message_at(globex.client, when)
    before = partition_names()

    text = run("purge", "--older-than", "3d", "--client", "acme")

    assert text.startswith("Deleted 1 finished messages") and "History" not in text
    assert partition_names() == before
    assert history_of(old) == ([], [])
    assert all(history_of(other))
    assert "history partition(s) would be dropped whole" in run(
        "purge", "--older-than", "3d", "--dry-run"
    )
    assert partition_names() == before


@pytest.fixture
def other_session(transactional_db) -> Iterator[psycopg2.extensions.connection]:
    """Another session on the test database (the purge's own commits are real here)."""
    other = psycopg2.connect(database_url())
    try:
        yield other
    finally:
        other.close()


def test_a_partition_whose_table_stays_busy_is_left_for_the_next_purge(other_session, monkeypatch):
    monkeypatch.setattr(retention, "DROP_TRIES", 1)
    monkeypatch.setattr(retention, "DROP_PAUSE_SECONDS", 0)
    day = today() - timedelta(days=3)
    assert history_partitions_ensure(today=day, ahead_days=0).created
    cutoff = day_start(day + timedelta(days=1))
    with other_session.cursor() as cursor:
        # A long read of the attempts, in an open transaction: no partition of theirs can be
        # detached until it ends.
        cursor.execute("LOCK TABLE deliveries_attempt IN ACCESS SHARE MODE")

    first = history_purge(before=cutoff)
    other_session.rollback()
    second = history_purge(before=cutoff)

    assert first.dropped == [EVENTS.day_partition(day)]
    assert first.busy == [ATTEMPTS.day_partition(day)]
    assert second.dropped == [ATTEMPTS.day_partition(day)] and not second.busy
    assert not day_partitions(day) & partition_names()


def test_the_beat_leaves_a_partition_of_a_busy_table_for_its_next_run(other_session):
    day = today() + timedelta(days=50)
    with other_session.cursor() as cursor:
        cursor.execute("LOCK TABLE deliveries_event IN ACCESS SHARE MODE")

    first = history_partitions_ensure(today=day, ahead_days=0)
    other_session.rollback()
    second = history_partitions_ensure(today=day, ahead_days=0)

    assert first.created == [ATTEMPTS.day_partition(day)]
    assert first.busy == [EVENTS.day_partition(day)]
    assert (second.created, second.busy) == ([EVENTS.day_partition(day)], [])
    for table in HISTORY_TABLES:  # the test database as it was
        partition_drop(table, Partition(table.day_partition(day)))
