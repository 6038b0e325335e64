"""Writes for clients and their API keys."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection

from django.utils import timezone

from accounts.models import ApiKey, Client

KEY_PREFIX = "mh_"
VISIBLE_CHARS = 8


def api_key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def client_get_or_create(*, name: str) -> Client:
    client, _ = Client.objects.get_or_create(name=name)
    return client


def api_key_create(*, client: Client, name: str = "") -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is not stored and never shown again."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        client=client,
        name=name,
        prefix=secret[: len(KEY_PREFIX) + VISIBLE_CHARS],
        key_hash=api_key_hash(secret),
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
