"""Writes for clients and their API keys."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection

from django.utils import timezone

from accounts.models import ApiKey, Client

#: How a key's secret starts: a live key's, and a test-mode key's. Only the stored
#: ``ApiKey.test_mode`` decides the mode; the prefix lets a person see it (in code, in logs, in
#: the admin's ``prefix`` column) before any mail is sent with the wrong one.
KEY_PREFIX = "mh_"
TEST_KEY_PREFIX = "mh_test_"
VISIBLE_CHARS = 8


def api_key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def client_get_or_create(*, name: str) -> Client:
    client, _ = Client.objects.get_or_create(name=name)
    return client


def api_key_create(
    *, client: Client, name: str = "", test_mode: bool = False
) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is not stored and never shown again.

    A ``test_mode`` key's mail is never sent: the simulator settles it (``ApiKey.test_mode``).
    """
    prefix = TEST_KEY_PREFIX if test_mode else KEY_PREFIX
    secret = prefix + secrets.token_urlsafe(32)
    while not test_mode and secret.startswith(TEST_KEY_PREFIX):  # a live key never looks test
        secret = prefix + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        client=client,
        name=name,
        prefix=secret[: len(prefix) + VISIBLE_CHARS],
        key_hash=api_key_hash(secret),
        test_mode=test_mode,
    )
    return key, secret


def api_key_revoke(*, key: ApiKey) -> bool:
    """Revoke a key; return False if it already was."""
    return bool(
        ApiKey.objects.filter(id=key.id, revoked_at__isnull=True).update(revoked_at=timezone.now())
    )


def api_keys_revoke(*, key_ids: Collection[int]) -> int:
    """Revoke keys; return how many were active until now."""
    return sum(api_key_revoke(key=key) for key in ApiKey.objects.filter(id__in=list(key_ids)))


def api_key_set_rate_limit(*, key: ApiKey, per_minute: int | None) -> None:
    """Give the key its own requests-per-minute limit, or ``None`` for the default
    (``MAILHUB_API_RATE_LIMIT_PER_MINUTE``). Takes effect with the key's next request."""
    if per_minute is not None and per_minute < 1:
        raise ValueError("a rate limit is at least 1 request per minute")
    ApiKey.objects.filter(id=key.id).update(rate_limit_per_minute=per_minute)
    key.rate_limit_per_minute = per_minute
