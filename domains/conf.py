"""Typed views of the sending-domain settings. Defaults live in ``mailhub/settings.py`` only."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings


def allow_unverified() -> bool:
    """Development only: any From is accepted, whatever the client's domains."""
    return bool(settings.MAILHUB_ALLOW_UNVERIFIED_DOMAINS)


def spf_include() -> str:
    """What clients' SPF records must ``include:``; "" when nothing is required."""
    return str(settings.MAILHUB_SPF_INCLUDE)


def bounce_domain() -> str:
    return str(settings.MAILHUB_BOUNCE_DOMAIN)


def bounce_mx_host() -> str:
    return str(settings.MAILHUB_BOUNCE_MX_HOST)


def nameservers() -> list[tuple[str, int]]:
    """The DNS servers to ask, (address, port); empty: the system's resolver configuration."""
    return list(settings.MAILHUB_DNS_RESOLVERS)


def dns_timeout() -> float:
    return float(settings.MAILHUB_DNS_TIMEOUT_SECONDS)


def verify_interval() -> timedelta:
    return timedelta(seconds=settings.MAILHUB_DOMAIN_VERIFY_INTERVAL_SECONDS)


def grace() -> timedelta:
    """How long a domain whose records went missing stays usable (`failing`)."""
    return timedelta(seconds=settings.MAILHUB_DOMAIN_GRACE_SECONDS)
