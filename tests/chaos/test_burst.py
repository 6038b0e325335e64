"""A burst of ten times the normal rate on `low` while `high` mail keeps coming."""

from __future__ import annotations

import statistics
import time

import pytest
from django.db.models import F
from django.utils import timezone

from deliveries.models import Delivery
from tests.chaos.stack import chaos_stack, settle, sinks

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TICK = 0.5  # seconds between two rounds of accepting
NORMAL_SECONDS, BURST_SECONDS = 15, 20
HIGH_PER_TICK = 1  # 2 a second, all along
LOW_PER_TICK = 5  # 10 a second; 100 a second during the burst
BURST_FACTOR = 10
# The relay takes 20 ms per message, so the general pool (two processes) drains at most about
# 100 a second: the burst builds a backlog on `low` that outlives it.
RELAY_DELAY = 0.02
LATENCY_BOUND_SECONDS = 5.0


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def high_latencies(client, tag: str) -> list[float]:
    """Seconds from acceptance to delivery of each `high` message tagged so, from Postgres."""
    rows = Delivery.objects.filter(
        message__client=client, message__subject__startswith=f"{tag} ", status="delivered"
    ).values_list(F("delivered_at") - F("message__created_at"), flat=True)
    return [delta.total_seconds() for delta in rows]


def test_a_burst_on_low_leaves_high_latency_where_it_was(actor):
    """Mail at a normal rate, then ten times as much on `low` for a while, `high` steady all
    along. The reserved `high` pool (as in the Procfile) keeps verification codes fast: p95 of
    accept -> delivered for `high` stays within a few seconds during the burst."""
    with sinks() as [sink], chaos_stack("burst", MAILHUB_SMTP_URL=sink.url) as stack:
        sink.delay_seconds = RELAY_DELAY
        stack.start_worker(queues=["high"], concurrency=1, name="high")
        stack.start_worker(concurrency=2, beat=True, name="general")
        counts = {"low": 0, "high-normal": 0, "high-burst": 0}

        def feed(seconds: float, *, low_per_tick: int, high_tag: str) -> None:
            deadline = time.monotonic() + seconds
            next_tick = time.monotonic()
            while next_tick < deadline:
                stack.accept(
                    actor.client,
                    HIGH_PER_TICK,
                    tag=high_tag,
                    priority="high",
                    first=counts[high_tag],
                )
                counts[high_tag] += HIGH_PER_TICK
                stack.accept(
                    actor.client, low_per_tick, tag="low", priority="low", first=counts["low"]
                )
                counts["low"] += low_per_tick
                next_tick += TICK
                time.sleep(max(0.0, next_tick - time.monotonic()))

        feed(NORMAL_SECONDS, low_per_tick=LOW_PER_TICK, high_tag="high-normal")
        feed(BURST_SECONDS, low_per_tick=LOW_PER_TICK * BURST_FACTOR, high_tag="high-burst")
        burst_ended = timezone.now()
        backlog = Delivery.objects.filter(
            message__client=actor.client, status__in=["queued", "sending"]
        ).count()

        row = settle(
            fault=f"{BURST_FACTOR}x burst on low ({BURST_SECONDS} s) with high steady",
            client=actor.client,
            sinks=[sink],
            fault_ended=burst_ended,
        )

    before = high_latencies(actor.client, "high-normal")
    during = high_latencies(actor.client, "high-burst")
    message = (
        f"high p95 accept->delivered: {p95(before):.2f} s before the burst, "
        f"{p95(during):.2f} s during it ({len(during)} messages); "
        f"low backlog when the burst ended: {backlog}"
    )
    print(f"\nchaos: {message}")
    row.notes.append(message)
    assert row.lost == 0, row.notes
    assert row.delivered == sum(counts.values())
    assert len(before) == counts["high-normal"] and len(during) == counts["high-burst"]
    assert p95(during) < LATENCY_BOUND_SECONDS
