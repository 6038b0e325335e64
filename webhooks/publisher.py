"""Puts due webhook work on RabbitMQ. Postgres holds what is owed; a lost publish only delays it:
the endpoint's claim expires and the next tick publishes it again."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from uuid import UUID

from amqp.exceptions import AMQPError, MessageNacked
from kombu.exceptions import KombuError

from mailhub.celery import app
from webhooks import conf

logger = logging.getLogger(__name__)

DELIVER_TASK = "webhooks.tasks.deliver"


def endpoints_publish(*, claims: Iterable[tuple[UUID, UUID]]) -> int:
    """Publish one delivery task per ``(endpoint_id, claim)``; return how many were confirmed."""
    published = 0
    try:
        with app.producer_or_acquire() as producer:
            for endpoint_id, claim in claims:
                app.send_task(
                    DELIVER_TASK,
                    args=[str(endpoint_id), str(claim)],
                    queue=conf.queue(),
                    producer=producer,
                )
                published += 1
    except (KombuError, AMQPError, MessageNacked, OSError) as exc:
        logger.warning(
            "webhook publish failed after %d task(s) (%s); the next tick publishes the rest",
            published,
            exc,
        )
    return published
