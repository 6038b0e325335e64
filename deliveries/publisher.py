"""Puts due work on RabbitMQ. Postgres already holds every row, so a failed publish loses nothing:
the row stays ``queued`` and the dispatcher publishes it again after
``MAILHUB_REPUBLISH_AFTER_SECONDS``."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from uuid import UUID

from amqp.exceptions import AMQPError, MessageNacked
from kombu.exceptions import KombuError

from deliveries import conf
from mailhub.celery import app

logger = logging.getLogger(__name__)

DELIVER_TASK = "deliveries.tasks.deliver_message"


def messages_publish(*, messages: Iterable[tuple[UUID | str, str]]) -> int:
    """Publish one delivery task per ``(message_id, priority)``; return how many were confirmed.

    Stops at the first failure: the broker is then most likely down, and every further try would
    only make the caller wait for the same answer.
    """
    published = 0
    try:
        with app.producer_or_acquire() as producer:
            for message_id, priority in messages:
                app.send_task(
                    DELIVER_TASK,
                    args=[str(message_id)],
                    queue=conf.queue_for(priority),
                    producer=producer,
                )
                published += 1
    except (KombuError, AMQPError, MessageNacked, OSError) as exc:
        logger.warning(
            "publish failed after %d task(s) (%s); the dispatcher will publish the rest",
            published,
            exc,
        )
    return published
