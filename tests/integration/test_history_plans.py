"""The hot paths' statements on the partitioned history keep index-driven plans and read only the
partitions of the days they can concern. Every statement a path runs is recorded (Django's
cursor, and psycopg2's ``execute_values`` behind it) and EXPLAINed with sequential scans off:
on a handful of rows the planner would rightly scan, so only a statement no index can serve
still shows a ``Seq Scan``. History is seeded on past days, each in its own partition."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from psycopg2.extensions import AsIs
from psycopg2.extras import execute_values

from accounts.models import Client
from deliveries import bulk, conf
from deliveries.models import Event, Message
from deliveries.partitions import HISTORY_TABLES, Partition, partitions_of, since
from deliveries.policy import SmtpReply, Stage
from deliveries.services import (
    MessageDraft,
    Recipient,
    attempts_record,
    deliveries_claim,
    history_partitions_ensure,
    message_accept,
    sending,
    transitions,
)
from tests.support.ops import seed_message_at
from webhooks.services import events_fan_out

pytestmark = pytest.mark.integration
HISTORY = ("deliveries_event", "deliveries_attempt")
OK = SmtpReply(250, "2.0.0 OK", Stage.DATA, "relay.test")


def today() -> date:
    return timezone.now().astimezone(UTC).date()


@pytest.fixture
def history(acme) -> list[Message]:
    """Mail of each of the last three days, with the partitions a database that old has."""
    history_partitions_ensure(today=today() - timedelta(days=3), ahead_days=3)
    noon = datetime.combine(today(), datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    return [seed_message_at(acme.client, noon - timedelta(days=n)) for n in (3, 2, 1)]


class Recorded:
    """Every statement run while it records, as sent: through Django's cursor, or psycopg2's
    ``execute_values`` (which the bulk statements use, past Django's cursor)."""

    def __init__(self, queries: CaptureQueriesContext) -> None:
        self.queries = queries
        self.raw: list[str] = []
        self.start = 0

    def clear(self) -> None:
        self.raw.clear()
        self.start = len(self.queries.captured_queries)

    def on_history(self) -> list[str]:
        """The statements a plan can be asked for that name a history table."""
        sent = [q["sql"] for q in self.queries.captured_queries[self.start :]] + self.raw
        plannable = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")
        return [
            sql
            for sql in sent
            if sql.lstrip().upper().startswith(plannable) and any(t in sql for t in HISTORY)
        ]


@pytest.fixture
def recorded(monkeypatch) -> Iterator[Recorded]:
    with CaptureQueriesContext(connection) as queries:
        recorded = Recorded(queries)

        def recording(cursor, sql, argslist, template=None, **options) -> Any:
            template_ = template or "(" + ",".join(["%s"] * len(argslist[0])) + ")"
            values = b",".join(cursor.mogrify(template_, row) for row in argslist).decode()
            recorded.raw.append(cursor.mogrify(sql, [AsIs(values)]).decode())
            return execute_values(cursor, sql, argslist, template=template, **options)

        for module in (bulk, sending, transitions):
            monkeypatch.setattr(module, "execute_values", recording)
        yield recorded


def scans(sql: str) -> list[dict[str, Any]]:
    """Every scan node of the statement's plan, sequential scans off."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
        plan = cursor.fetchone()[0]
        cursor.execute("SET LOCAL enable_seqscan = on")
    plan = json.loads(plan) if isinstance(plan, str) else plan
    found, nodes = [], [plan[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        if node["Node Type"].endswith("Scan"):
            found.append(node)
        nodes += node.get("Plans", [])
    return found


def history_read(sql: str) -> set[str]:
    """The history partitions the statement reads, after it checked that each is read through an
    index."""
    read = set()
    for node in scans(sql):
        relation = node.get("Relation Name", "")
        if relation.startswith(HISTORY):
            assert node["Node Type"] != "Seq Scan", f"{relation} read whole by:\n{sql}"
            read.add(relation)
    return read


def partitions_where(keep: Callable[[Partition], bool]) -> set[str]:
    return {p.name for table in HISTORY_TABLES for p in partitions_of(table) if keep(p)}


def since_moment(moment: datetime) -> set[str]:
    """The partitions that can hold history written from ``moment`` on."""
    start = since(moment)
    return partitions_where(lambda p: p.is_default or p.upper is None or p.upper > start)


def with_rows(messages: list[Message]) -> set[str]:
    """The day partitions holding these (past) messages' history."""
    days = {m.created_at.astimezone(UTC).date() for m in messages}
    return {table.day_partition(day) for table in HISTORY_TABLES for day in days}


def accept(client) -> Message:
    draft = MessageDraft(
        sender="Shop <no-reply@shop.test>",
        recipients=[Recipient("ann@example.com")],
        subject="Your code",
        text="123456",
    )
    return message_accept(client=client, draft=draft)


def test_accepting_mail_reads_no_history(acme, history, recorded):
    accept(acme.client)

    statements = recorded.on_history()
    assert statements  # it writes events
    for sql in statements:
        assert history_read(sql) == set()


def test_a_claim_reads_the_attempts_of_a_lease_ago_only(acme, history, recorded):
    message = accept(acme.client)
    recorded.clear()

    assert deliveries_claim(message_ids=[message.id], task_id="task-1", worker="w")

    allowed = since_moment(timezone.now() - conf.lease())
    read = [history_read(sql) for sql in recorded.on_history()]
    assert any(read), "the per-domain count reads the attempts being sent"
    for partitions in read:
        assert partitions <= allowed
        assert not partitions & with_rows(history)


def test_settling_reads_the_partition_of_the_claim_only(acme, history, recorded):
    message = accept(acme.client)
    claims = deliveries_claim(message_ids=[message.id], task_id="task-1", worker="w")
    recorded.clear()

    attempts_record(
        claims=claims, replies={d.id: OK for d in claims[0].claimed}, durations={message.id: 5}
    )

    statements = recorded.on_history()
    attempt_updates = [sql for sql in statements if "UPDATE deliveries_attempt" in sql]
    assert len(attempt_updates) == 1
    day = claims[0].started_at.astimezone(UTC).date()
    assert history_read(attempt_updates[0]) == {f"deliveries_attempt_p{day:%Y%m%d}"}
    for sql in statements:
        assert not history_read(sql) & with_rows(history)


def test_a_message_and_its_events_read_the_partitions_since_it_was_accepted(acme, history):
    message = accept(acme.client)
    claims = deliveries_claim(message_ids=[message.id], task_id="task-1", worker="w")
    attempts_record(
        claims=claims, replies={d.id: OK for d in claims[0].claimed}, durations={message.id: 5}
    )
    for page in (f"/api/v1/messages/{message.id}", f"/api/v1/messages/{message.id}/events"):
        with CaptureQueriesContext(connection) as queries:
            response = acme.api.get(page)
        assert response.status_code == 200

        read = [history_read(q["sql"]) for q in queries.captured_queries]
        assert set().union(*read)
        for partitions in read:
            assert partitions <= since_moment(message.created_at)
            assert not partitions & with_rows(history)


def test_the_event_log_reads_by_index_and_a_cursor_skips_the_days_after_it(acme, history):
    newest = Event.objects.filter(client=acme.client).order_by("-created_at", "-id").first()
    first = acme.api.get("/api/v1/events", {"limit": 1})
    assert first.status_code == 200 and first.json()["results"][0]["id"] == str(newest.id)

    with CaptureQueriesContext(connection) as queries:
        second = acme.api.get(first.json()["next"])

    assert second.status_code == 200 and len(second.json()["results"]) == 1
    read = set().union(*(history_read(q["sql"]) for q in queries.captured_queries))
    assert read & with_rows(history)  # older days are where the page goes on
    later = partitions_where(lambda p: p.lower is not None and p.lower > newest.created_at)
    assert later and not read & later


def test_the_fan_out_marks_its_batch_in_the_partitions_of_its_days(acme, history, recorded):
    Event.objects.filter(message__in=history).update(fanned_out=True)
    # As if acme had a webhook endpoint: its new events wait for the fan-out.
    Client.objects.filter(id=acme.client.id).update(wants_events=True)
    message = accept(acme.client)
    recorded.clear()

    assert events_fan_out(limit=100)[0] == Event.objects.filter(message=message).count()

    statements = recorded.on_history()
    marking = [sql for sql in statements if sql.startswith("UPDATE")]
    assert len(marking) == 1
    day = message.created_at.astimezone(UTC).date()
    assert history_read(marking[0]) == {f"deliveries_event_p{day:%Y%m%d}"}
    # The search for events to fan out reads every partition, each through its partial index.
    assert all(history_read(sql) for sql in statements)
