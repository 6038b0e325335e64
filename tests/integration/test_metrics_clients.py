"""The per-client label of /metrics' accepted and delivery-event counters: at most
MAILHUB_METRICS_TOP_CLIENTS clients are named (the previous UTC day's busiest, then the first
seen today), every other client is "other", and the split is the same whenever a process counts.

Mail is accepted through the API inside each test's transaction (nothing is published: the
transaction never commits)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from deliveries import metrics
from deliveries.models import Event, Message
from tests.builders import make_actor, message_payload


@pytest.fixture(autouse=True)
def tally(monkeypatch, settings) -> metrics._DailyTally:
    """A tally of the test's own, as a fresh process would have, counting rows at once; two
    clients named unless a test says otherwise."""
    settings.MAILHUB_METRICS_LAG_SECONDS = 0
    settings.MAILHUB_METRICS_TOP_CLIENTS = 2
    fresh = metrics._DailyTally()
    monkeypatch.setattr(metrics, "_tally", fresh)
    return fresh


@pytest.fixture
def four(db):
    return [make_actor(name) for name in ("ann-shop", "bob-bank", "cy", "dee")]


def send(actor, count: int = 1) -> None:
    for _ in range(count):
        response = actor.api.post("/api/v1/messages", message_payload(), format="json")
        assert response.status_code == 202, response.content


def by_client(name: str, **labels: str) -> dict[str, float]:
    """Each ``client`` label's value of the samples ``name`` with ``labels``, from a render."""
    values: dict[str, float] = {}
    text = metrics.metrics_render(now=timezone.now() + timedelta(seconds=1)).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                client = sample.labels["client"]
                values[client] = values.get(client, 0.0) + sample.value
    return values


pytestmark = pytest.mark.integration


def test_the_first_clients_seen_today_are_named_and_the_rest_are_other(four):
    ann, bob, cy, dee = four
    send(ann)
    send(bob, 2)
    send(cy, 3)
    send(dee)

    accepted = by_client("mailhub_messages_accepted_total")
    delivered_events = by_client("mailhub_delivery_events_total", type="accepted")

    assert accepted == {"ann-shop": 1, "bob-bank": 2, "other": 4}
    assert delivered_events == accepted  # one recipient per message: one `accepted` event each


def test_with_no_client_to_name_everything_is_other(db, settings):
    settings.MAILHUB_METRICS_TOP_CLIENTS = 0
    send(make_actor("ann-shop"), 2)

    assert by_client("mailhub_messages_accepted_total") == {"other": 2}


def test_the_split_is_the_same_whenever_a_process_counts(db):
    """A process that counted after every message and one that counts once at the end name the
    same clients and report the same numbers: scrapes reaching either never see a counter go
    down."""
    actors = [make_actor(name) for name in ("ann-shop", "bob-bank", "cy")]
    often = metrics._DailyTally()
    for actor in [actors[2], actors[0], actors[2], actors[1], actors[0]]:
        send(actor)
        often.advance(now=timezone.now(), lag=timedelta(0))
    once = metrics._DailyTally()
    now = timezone.now()

    _, once_totals, once_named = once.advance(now=now, lag=timedelta(0))
    _, often_totals, often_named = often.advance(now=now, lag=timedelta(0))

    assert once_named == often_named == [actors[2].client.id, actors[0].client.id]
    assert once_totals.accepted == often_totals.accepted
    assert once_totals.events == often_totals.events


def test_yesterdays_busiest_clients_are_named_before_todays_first(four):
    ann, bob, cy, dee = four
    send(ann)
    send(bob, 3)
    send(cy, 2)
    for model in (Message, Event):
        model.objects.update(created_at=F("created_at") - timedelta(days=1))
    send(ann, 2)  # today's first
    send(dee)
    send(cy)

    accepted = by_client("mailhub_messages_accepted_total")

    # bob and cy were yesterday's busiest: named all day, even before they send today.
    assert accepted == {"bob-bank": 0, "cy": 1, "other": 3}


def test_a_client_named_like_the_other_bucket_shares_its_series_without_duplicates(db):
    send(make_actor("other"))
    send(make_actor("ann-shop"))

    text = metrics.metrics_render(now=timezone.now() + timedelta(seconds=1)).decode()

    seen = [
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]
    assert len(seen) == len(set(seen))
    assert by_client("mailhub_messages_accepted_total") == {"other": 1, "ann-shop": 1}
