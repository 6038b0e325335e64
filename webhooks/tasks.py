"""Celery entry points for webhooks, thin wrappers over services: the deliveries on the `webhooks`
queue, beat's ticks on `webhooks.tick` (see MAILHUB_WEBHOOK_TICK_QUEUE in mailhub/settings.py)."""

from __future__ import annotations

import logging
import math

from celery import shared_task

from mailhub.logs import tick_level
from webhooks import conf
from webhooks.services import endpoint_deliver, webhooks_tick

logger = logging.getLogger(__name__)

# The task stops starting new requests after its budget; each request is bounded by the timeout.
# The soft limit is a backstop that only a bug could reach (whole seconds: Celery's type).
_DELIVER_LIMIT = math.ceil(conf.task_budget() + conf.timeout() + conf.connect_timeout() + 30)


@shared_task(ignore_result=True)
def tick() -> None:
    report = webhooks_tick()
    logger.log(
        tick_level(report.events, report.published),
        "webhook tick: %d event(s) fanned out into %d notification(s), %d endpoint(s) published",
        report.events,
        report.notifications,
        report.published,
    )


@shared_task(
    bind=True,
    acks_late=True,
    ignore_result=True,
    soft_time_limit=_DELIVER_LIMIT,
    time_limit=_DELIVER_LIMIT + 30,
)
def deliver(self, endpoint_id: str, claim: str) -> None:
    endpoint_deliver(endpoint_id=endpoint_id, claim=claim, task_id=self.request.id or "")
