"""deliveries 0011 converts the history tables of a populated database in place: every event and
attempt is kept, in the partition of its day (or month, when old), with a week of partitions
ahead and a DEFAULT partition; the attempt ids go on from where they were; a notification still
finds its event. And back: the reverse restores the previous layout with every row."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from deliveries.models import Attempt, Event
from tests.support.databases import scratch_database
from webhooks.models import Notification

pytestmark = pytest.mark.integration

#: The layout before the partitions.
PREVIOUS_LAYOUT = [
    ("deliveries", "0010_relay_message_id"),
    ("webhooks", "0003_complained_events"),
]
#: The history's ages, in days from now: older than the daily partitions, within them, ahead,
#: and past the week ahead (a clock far off).
AGES = [-200, -40, -1, 0, 3, 20]
EVENT_FIELDS = ("id", "created_at", "type", "recipient", "attempt", "reply", "fanned_out")
ATTEMPT_FIELDS = ("id", "started_at", "number", "outcome", "reply", "delivery_id")


@pytest.fixture
def previous(django_db_setup, django_db_blocker) -> Iterator[str]:
    with django_db_blocker.unblock(), scratch_database("prepartition") as alias:
        for app, migration in PREVIOUS_LAYOUT:
            call_command("migrate", app, migration, database=alias, verbosity=0)
        yield alias


def sql(db: str, query: str, params: list[Any] | None = None) -> list[tuple]:
    with connections[db].cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def seed(db: str) -> dict:
    """History of every age through the previous layout's models, an endpoint notified of one
    event, and an attempt id used then deleted (the sequence is ahead of the rows)."""
    old = MigrationExecutor(connections[db]).loader.project_state(PREVIOUS_LAYOUT).apps
    now = timezone.now()
    client = old.get_model("accounts", "Client").objects.using(db).create(name="acme")
    message = (
        old.get_model("deliveries", "Message")
        .objects.using(db)
        .create(
            client=client,
            sender="Shop <no-reply@shop.test>",
            message_id="<before-partitions@shop.test>",
            created_at=now + timedelta(days=min(AGES)),
            expires_at=now,
            status="delivered",
        )
    )
    delivery = (
        old.get_model("deliveries", "Delivery")
        .objects.using(db)
        .create(message=message, address="ann@example.com", status="delivered", updated_at=now)
    )
    OldEvent = old.get_model("deliveries", "Event")
    OldAttempt = old.get_model("deliveries", "Attempt")
    for number, age in enumerate(AGES, start=1):
        when = now + timedelta(days=age)
        OldEvent.objects.using(db).create(
            client=client,
            message=message,
            delivery=delivery,
            type="deferred",
            recipient="ann@example.com",
            attempt=number,
            reply=f"451 try later ({age} days)",
            created_at=when,
            fanned_out=True,
        )
        OldAttempt.objects.using(db).create(
            delivery=delivery, number=number, started_at=when, outcome="deferred", reply="451"
        )
    OldAttempt.objects.using(db).create(delivery=delivery, number=99, started_at=now).delete()
    endpoint = (
        old.get_model("webhooks", "Endpoint")
        .objects.using(db)
        .create(client=client, url="https://hooks.acme.test/", secret="whsec")
    )
    notified = OldEvent.objects.using(db).order_by("created_at").last()
    old.get_model("webhooks", "Notification").objects.using(db).create(
        endpoint=endpoint, event=notified, created_at=now
    )
    return {
        "events": set(OldEvent.objects.using(db).values_list(*EVENT_FIELDS)),
        "attempts": set(OldAttempt.objects.using(db).values_list(*ATTEMPT_FIELDS)),
        "last_attempt_id": max(OldAttempt.objects.using(db).values_list("id", flat=True)) + 1,
        "notified": notified.id,
        "delivery": delivery.id,
    }


def holders(db: str, table: str, column: str) -> dict[datetime, str]:
    """The partition (or table) each row is in, by the row's time."""
    rows = sql(db, f"SELECT {column}, tableoid::regclass::text FROM {table}")
    return {when.astimezone(UTC): holder for when, holder in rows}


def partitions(db: str, table: str) -> set[str]:
    return {
        name
        for (name,) in sql(
            db,
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = %s::regclass",
            [table],
        )
    }


def name_for(table: str, when: datetime, monthly: bool) -> str:
    return f"{table}_p{when:%Y%m}" if monthly else f"{table}_p{when:%Y%m%d}"


def test_a_populated_database_is_partitioned_in_place_and_back(previous):
    before = seed(previous)

    call_command("migrate", database=previous, verbosity=0)

    events, attempts = Event.objects.using(previous), Attempt.objects.using(previous)
    assert set(events.values_list(*EVENT_FIELDS)) == before["events"]
    assert set(attempts.values_list(*ATTEMPT_FIELDS)) == before["attempts"]
    for table, column in (("deliveries_event", "created_at"), ("deliveries_attempt", "started_at")):
        assert sql(previous, "SELECT relkind FROM pg_class WHERE relname = %s", [table]) == [("p",)]
        for when, holder in holders(previous, table, column).items():
            # Months for rows older than about 90 days, days after: none in the DEFAULT one.
            assert holder == name_for(table, when, when < timezone.now() - timedelta(days=125))
        today = timezone.now().astimezone(UTC)
        ahead = {f"{table}_p{today + timedelta(days=n):%Y%m%d}" for n in range(8)}
        assert ahead | {f"{table}_default"} <= partitions(previous, table)
    [(key,)] = sql(
        previous,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = %s",
        ["deliveries_event_pkey"],
    )
    assert key == "PRIMARY KEY (id, created_at)"
    assert sql(
        previous,
        "SELECT count(*) FROM pg_constraint WHERE confrelid = 'deliveries_event'::regclass",
    ) == [(0,)]
    assert Notification.objects.using(previous).get().event.id == before["notified"]
    # New rows: the ids go on; a time no partition covers lands in the DEFAULT partition.
    far = timezone.now() + timedelta(days=400)
    new = attempts.create(delivery_id=before["delivery"], number=7, started_at=far)
    assert new.id == before["last_attempt_id"] + 1
    landed = holders(previous, "deliveries_attempt", "started_at")[far]
    assert landed == "deliveries_attempt_default"

    for app, migration in reversed(PREVIOUS_LAYOUT):
        call_command("migrate", app, migration, database=previous, verbosity=0)

    for table in ("deliveries_event", "deliveries_attempt"):
        assert sql(previous, "SELECT relkind FROM pg_class WHERE relname = %s", [table]) == [("r",)]
    assert set(events.values_list(*EVENT_FIELDS)) == before["events"]
    assert len(attempts.values_list("id")) == len(before["attempts"]) + 1
    assert sql(
        previous, "SELECT count(*) FROM pg_constraint WHERE conname = 'attempt_unique_number'"
    ) == [(1,)]
    [(next_id,)] = sql(
        previous, "SELECT nextval(pg_get_serial_sequence('deliveries_attempt', 'id'))"
    )
    assert next_id == new.id + 1

    call_command("migrate", database=previous, verbosity=0)

    assert set(events.values_list(*EVENT_FIELDS)) == before["events"]
