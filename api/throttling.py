"""The API's throttle: each request counts against its key's limit (``accounts.rate_limit``)."""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError
from rest_framework.throttling import BaseThrottle

from accounts.models import ApiKey
from accounts.rate_limit import api_key_rate_check
from api.authentication import InvalidApiKey


class ApiKeyRateThrottle(BaseThrottle):
    """``429 Too Many Requests`` with ``Retry-After`` past the key's requests per minute."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request, view) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return True  # unauthenticated: refused by authentication, or a public page
        limit = key.rate_limit_per_minute or settings.MAILHUB_API_RATE_LIMIT_PER_MINUTE
        try:
            decision = api_key_rate_check(key_id=key.id, limit=limit)
        except IntegrityError:
            # The key was deleted since this request was authenticated: its counter row cannot
            # be created. The request is as unauthenticated as if it had come a moment later.
            raise InvalidApiKey() from None
        self._wait = decision.wait_seconds
        return decision.allowed

    def wait(self) -> float | None:
        return self._wait
