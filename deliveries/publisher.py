"""Puts due work on RabbitMQ. Postgres already holds every row, so a failed publish loses nothing:
the row stays ``queued`` and the dispatcher publishes it again after
``MAILHUB_REPUBLISH_AFTER_SECONDS``."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from uuid import UUID

from amqp.exceptions import AMQPError, MessageNacked
from django.conf import settings
from kombu.exceptions import KombuError

from deliveries import conf
from mailhub.celery import app

logger = logging.getLogger(__name__)

DELIVER_TASK = "deliveries.tasks.deliver_messages"


def messages_publish(*, messages: Iterable[tuple[UUID | str, str]]) -> int:
    """Publish delivery tasks for ``(message_id, priority)`` pairs; return how many messages.

    Messages of one priority travel in tasks of up to ``MAILHUB_TASK_BATCH_SIZE``, so that a
    worker claims, sends and records them together. Stops at the first failure: the broker is
    then most likely down, and every further try would only make the caller wait for the same
    answer.
    """
    by_priority: dict[str, list[str]] = defaultdict(list)
    for message_id, priority in messages:
        by_priority[priority].append(str(message_id))
    size = settings.MAILHUB_TASK_BATCH_SIZE
    published = 0
    try:
        with app.producer_or_acquire() as producer:
            for priority, ids in by_priority.items():
                for start in range(0, len(ids), size):
                    chunk = ids[start : start + size]
                    app.send_task(
                        DELIVER_TASK,
                        args=[chunk],
                        queue=conf.queue_for(priority),
                        producer=producer,
                    )
                    published += len(chunk)
    except (KombuError, AMQPError, MessageNacked, OSError) as exc:
        logger.warning(
            "publish failed after %d message(s) (%s); the dispatcher will publish the rest",
            published,
            exc,
        )
    return published
