"""Typed views of Mailhub's settings. Defaults live in ``mailhub/settings.py`` only."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from deliveries.policy import RetryPolicy


def retry_policy() -> RetryPolicy:
    return RetryPolicy(
        base_seconds=settings.MAILHUB_RETRY_BASE_SECONDS,
        factor=settings.MAILHUB_RETRY_FACTOR,
        cap_seconds=settings.MAILHUB_RETRY_CAP_SECONDS,
        jitter=settings.MAILHUB_RETRY_JITTER,
        max_attempts=settings.MAILHUB_MAX_ATTEMPTS,
    )


def lease() -> timedelta:
    return timedelta(seconds=settings.MAILHUB_LEASE_SECONDS)


def republish_after() -> timedelta:
    return timedelta(seconds=settings.MAILHUB_REPUBLISH_AFTER_SECONDS)


def message_lifetime() -> timedelta:
    return timedelta(seconds=settings.MAILHUB_MESSAGE_LIFETIME_SECONDS)


def queue_for(priority: str) -> str:
    return settings.MAILHUB_QUEUES[priority]
