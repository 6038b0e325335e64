"""Typed views of Mailhub's settings. Defaults live in ``mailhub/settings.py`` only."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from deliveries.limits import DomainLimit
from deliveries.policy import RetryPolicy


def retry_policy() -> RetryPolicy:
    return RetryPolicy(
        base_seconds=settings.MAILHUB_RETRY_BASE_SECONDS,
        factor=settings.MAILHUB_RETRY_FACTOR,
        cap_seconds=settings.MAILHUB_RETRY_CAP_SECONDS,
        jitter=settings.MAILHUB_RETRY_JITTER,
        max_attempts=settings.MAILHUB_MAX_ATTEMPTS,
    )


def quarantine_after_lost() -> int:
    return settings.MAILHUB_QUARANTINE_AFTER_LOST_ATTEMPTS


def lease() -> timedelta:
    return timedelta(seconds=settings.MAILHUB_LEASE_SECONDS)


def republish_after() -> timedelta:
    return timedelta(seconds=settings.MAILHUB_REPUBLISH_AFTER_SECONDS)


def message_lifetime() -> timedelta:
    return timedelta(seconds=settings.MAILHUB_MESSAGE_LIFETIME_SECONDS)


def queue_for(priority: str) -> str:
    return settings.MAILHUB_QUEUES[priority]


def domain_limits() -> tuple[dict[str, DomainLimit], DomainLimit]:
    """The per-domain exceptions and the default limit."""
    limits = {
        domain: DomainLimit(concurrency=concurrency, per_minute=per_minute)
        for domain, (concurrency, per_minute) in settings.MAILHUB_DOMAIN_LIMITS.items()
    }
    default = DomainLimit(
        concurrency=settings.MAILHUB_DOMAIN_CONCURRENCY,
        per_minute=settings.MAILHUB_DOMAIN_RATE_PER_MINUTE,
    )
    return limits, default


def domain_wait() -> timedelta:
    return timedelta(seconds=settings.MAILHUB_DOMAIN_WAIT_SECONDS)


def template_cpu_seconds() -> float:
    """CPU time one render, or one compilation, of a client's template may use."""
    return settings.MAILHUB_TEMPLATE_CPU_SECONDS


def template_max_output_chars() -> int:
    """Characters one rendered part of a client's template may come to."""
    return settings.MAILHUB_TEMPLATE_MAX_OUTPUT_CHARS


def metrics_top_clients() -> int:
    """How many clients /metrics names in its per-client counters (the rest are "other")."""
    return settings.MAILHUB_METRICS_TOP_CLIENTS


def esp_webhooks() -> list[str]:
    """The ESPs whose tracking webhooks are mounted (``MAILHUB_ESP_WEBHOOKS``)."""
    return list(settings.MAILHUB_ESP_WEBHOOKS)


def history_partitions_ahead_days() -> int:
    """Days of history partitions kept made ahead of today."""
    return settings.MAILHUB_HISTORY_PARTITIONS_AHEAD_DAYS


def bounce_domain() -> str:
    """The VERP bounce domain, or "" when envelope senders are the From address."""
    return settings.MAILHUB_BOUNCE_DOMAIN


def public_url() -> str:
    """Where Mailhub is reached from outside, without a trailing slash."""
    return settings.MAILHUB_PUBLIC_URL
