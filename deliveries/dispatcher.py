"""The dispatcher: Postgres holds what waits, RabbitMQ carries only what is due now.

Run by Celery beat every ``MAILHUB_DISPATCH_INTERVAL_SECONDS``. Each tick reads the due rows
through the partial index ``delivery_due`` and
- releases deferred and scheduled deliveries whose time has come (-> queued, published);
- publishes again queued deliveries no worker took in time (the first publish may be lost);
- takes back deliveries whose worker's lease expired (the worker died) and retries them, or
  fails them as quarantined when that keeps happening (``delivery_mark_lost``);
- fails queued deliveries whose message outlived its lifetime.

A message with a lost attempt is published in a task of its own: if its content is what kills
workers, it takes no healthy mail down with it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from deliveries import conf
from deliveries.models import Delivery, DomainWindow
from deliveries.publisher import messages_publish
from deliveries.services import (
    deliveries_transition,
    delivery_mark_lost,
    messages_refresh_status,
)
from deliveries.states import ACTIVE, DeliveryStatus

S = DeliveryStatus

# Any constant will do; it only has to be the same for every dispatcher sharing a database.
_ADVISORY_LOCK = 0x4D41494C  # "MAIL"


@dataclass
class DispatchReport:
    released: int = 0  # deferred or scheduled -> queued
    republished: int = 0  # queued for too long, published again
    recovered: int = 0  # lease expired -> deferred (or failed)
    expired: int = 0  # queued past the message lifetime -> failed
    published_messages: int = 0
    skipped: bool = False  # another dispatcher was running

    @property
    def touched(self) -> int:
        return self.released + self.republished + self.recovered + self.expired

    def __str__(self) -> str:
        if self.skipped:
            return "skipped: another dispatcher is running"
        return (
            f"released {self.released}, republished {self.republished}, recovered "
            f"{self.recovered}, expired {self.expired}; published {self.published_messages} "
            "message(s)"
        )


def deliveries_dispatch(*, batch: int | None = None) -> DispatchReport:
    """One dispatcher tick. At most one runs at a time, across all machines."""
    report = DispatchReport()
    now = timezone.now()
    batch = batch or settings.MAILHUB_DISPATCH_BATCH
    to_publish: dict[str, str] = {}
    to_publish_alone: dict[str, str] = {}  # messages with a lost attempt, one per task
    with transaction.atomic():
        # A transaction-scoped advisory lock keeps a second beat (a mistake, or a failover
        # overlap) from dispatching the same rows twice; it ends with the transaction.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_ADVISORY_LOCK])
            if not cursor.fetchone()[0]:
                report.skipped = True
                return report
        due = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status__in=sorted(ACTIVE), next_attempt_at__lte=now)
            .order_by("next_attempt_at")
            .values_list(
                "id",
                "message_id",
                "status",
                "attempts",
                "message__priority",
                "message__expires_at",
                "lost_attempts",
            )[:batch]
        )
        release: list[int] = []
        republish: list[int] = []
        expire: list[int] = []
        touched_messages = set()
        for delivery_id, message_id, status, attempts, priority, expires_at, lost in due:
            touched_messages.add(message_id)
            if status == S.SENDING:
                delivery_mark_lost(
                    delivery_id=delivery_id, attempts=attempts, expires_at=expires_at, now=now
                )
                report.recovered += 1
                continue
            if expires_at <= now and status in (S.QUEUED, S.DEFERRED):
                expire.append(delivery_id)
                continue
            (republish if status == S.QUEUED else release).append(delivery_id)
            (to_publish_alone if lost else to_publish)[str(message_id)] = priority
        again_at = now + conf.republish_after()
        report.released = deliveries_transition(
            delivery_ids=release, to=S.QUEUED, next_attempt_at=again_at
        )
        report.republished = Delivery.objects.filter(id__in=republish, status=S.QUEUED).update(
            next_attempt_at=again_at
        )
        report.expired = deliveries_transition(
            delivery_ids=expire,
            to=S.FAILED,
            next_attempt_at=None,
            last_reply="message lifetime exceeded before it could be delivered",
        )
        messages_refresh_status(message_ids=touched_messages)
        # Rate-limit windows older than the current minute are never read again.
        DomainWindow.objects.filter(minute__lt=now - timedelta(minutes=2)).delete()
    for alone in to_publish_alone:
        to_publish.pop(alone, None)
    if to_publish:
        report.published_messages = messages_publish(messages=to_publish.items())
    for message in to_publish_alone.items():
        report.published_messages += messages_publish(messages=[message])
    return report
