"""Probing RabbitMQ from a request (/readyz, /metrics): connect once to each node, never loop."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from kombu import Connection


@contextmanager
def broker_connection(*, timeout: float) -> Iterator[Connection]:
    """A connection to ``CELERY_BROKER_URL``, read when called. With several nodes (``;``: a
    cluster) each is tried once, in turn, without a pause: one node down is no outage, and a
    probe must not sit in kombu's retry loop. Raises kombu's error when no node answers."""
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=timeout) as connection:
        # kombu moves to the next node after each failure, and sleeps only after a whole round.
        connection.ensure_connection(max_retries=max(len(connection.alt), 1) - 1)
        yield connection
