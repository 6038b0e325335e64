"""Typed views of the webhook settings. Defaults live in ``mailhub/settings.py`` only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings

from deliveries.policy import RetryPolicy


def retry_policy() -> RetryPolicy:
    # Webhooks give up by age (the retry horizon), not by count: `max_attempts` is not consulted.
    return RetryPolicy(
        base_seconds=settings.MAILHUB_WEBHOOK_RETRY_BASE_SECONDS,
        factor=settings.MAILHUB_WEBHOOK_RETRY_FACTOR,
        cap_seconds=settings.MAILHUB_WEBHOOK_RETRY_CAP_SECONDS,
        jitter=settings.MAILHUB_WEBHOOK_RETRY_JITTER,
        max_attempts=0,
    )


def queue() -> str:
    return settings.MAILHUB_WEBHOOK_QUEUE


def interval() -> float:
    return settings.MAILHUB_WEBHOOK_INTERVAL_SECONDS


def fanout_batch() -> int:
    return settings.MAILHUB_WEBHOOK_FANOUT_BATCH


def max_batch() -> int:
    return settings.MAILHUB_WEBHOOK_MAX_BATCH


def connect_timeout() -> float:
    return settings.MAILHUB_WEBHOOK_CONNECT_TIMEOUT_SECONDS


def timeout() -> float:
    return settings.MAILHUB_WEBHOOK_TIMEOUT_SECONDS


def task_budget() -> float:
    return settings.MAILHUB_WEBHOOK_TASK_BUDGET_SECONDS


def republish_after() -> timedelta:
    return timedelta(seconds=settings.MAILHUB_WEBHOOK_REPUBLISH_AFTER_SECONDS)


def send_lease() -> timedelta:
    """How long a claim lasts while one request is under way: the request limit plus a margin."""
    return timedelta(seconds=timeout() + connect_timeout() + 10)


def retry_horizon() -> timedelta:
    return timedelta(seconds=settings.MAILHUB_WEBHOOK_RETRY_HORIZON_SECONDS)


def disable_after() -> timedelta:
    return timedelta(seconds=settings.MAILHUB_WEBHOOK_DISABLE_AFTER_SECONDS)


@dataclass(frozen=True)
class UrlPolicy:
    """Which webhook URLs may be called: the server-side request forgery guard's settings."""

    allow_http: bool = False
    allow_loopback: bool = False
    allow_private: bool = False


def url_policy() -> UrlPolicy:
    return UrlPolicy(
        allow_http=settings.MAILHUB_WEBHOOK_ALLOW_HTTP,
        allow_loopback=settings.MAILHUB_WEBHOOK_ALLOW_LOOPBACK,
        allow_private=settings.MAILHUB_WEBHOOK_ALLOW_PRIVATE,
    )
