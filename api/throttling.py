"""Rate limits per API key, counted in a store that every API process shares.

The count is a sliding window, approximated the usual way from two fixed one-minute windows:
``estimate = previous_window * (share of it still inside the last minute) + this_window``. It
needs one small row per key instead of a timestamp per request, and has no burst of twice the
limit at a minute boundary the way a plain fixed window has.

The store is Django's cache named by ``MAILHUB_THROTTLE_CACHE`` (a ``DatabaseCache`` in Postgres
by default). A cache has no atomic read-modify-write, so each check holds a transaction-scoped
Postgres advisory lock on the key while it reads and writes: concurrent requests of one key, in
any process, are counted one after the other and none is lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.db import connections, router, transaction
from rest_framework.throttling import BaseThrottle

from api.models import ApiKey

WINDOW_SECONDS = 60.0
# First half of a two-key advisory lock; the dispatcher's one-key lock cannot collide with it.
_LOCK_NAMESPACE = 0x54485254  # "THRT"

#: (index of the window, requests counted in it, requests counted in the window before it)
State = tuple[int, int, int]


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    state: State
    wait_seconds: float  # until a request would be allowed; 0 when allowed


def rate_check(
    *, state: State | None, now: float, limit: int, window: float = WINDOW_SECONDS
) -> RateDecision:
    """Decide one request against ``limit`` per ``window`` given what was counted so far."""
    index = int(now // window)
    elapsed = (now - index * window) / window  # share of the current window gone, in [0, 1)
    count = previous = 0
    if state is not None:
        seen_index, seen_count, seen_previous = state
        if seen_index == index:
            count, previous = seen_count, seen_previous
        elif seen_index == index - 1:
            previous = seen_count
    if previous * (1 - elapsed) + count + 1 <= limit:
        return RateDecision(True, (index, count + 1, previous), 0.0)
    if count + 1 > limit:
        # This window alone is full: wait for the next one, and into it until this window's
        # share of the estimate has shrunk enough for one more request.
        share = max(0.0, 1 - (limit - 1) / count)
        wait = (1 - elapsed) * window + share * window
    else:
        # The previous window's share must shrink: previous * (1 - e) + count + 1 <= limit.
        wait = (1 - (limit - 1 - count) / previous - elapsed) * window
    return RateDecision(False, (index, count, previous), max(wait, 0.001))


def api_key_rate_check(*, key_id: int, limit: int) -> RateDecision:
    """Count one request of the key if it is within ``limit`` per minute; say how long to wait
    otherwise."""
    cache = caches[settings.MAILHUB_THROTTLE_CACHE]
    # DatabaseCache writes where the router sends its model; the lock must be taken there.
    model = getattr(cache, "cache_model_class", None)
    database = router.db_for_write(model) if model is not None else "default"
    cache_key = f"ratelimit:{key_id}"
    with transaction.atomic(using=database):
        with connections[database].cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, key_id % 2**31]
            )
        decision = rate_check(state=cache.get(cache_key), now=time.time(), limit=limit)
        if decision.allowed:
            cache.set(cache_key, decision.state, timeout=2 * WINDOW_SECONDS)
    return decision


class ApiKeyRateThrottle(BaseThrottle):
    """``429 Too Many Requests`` with ``Retry-After`` past the key's requests per minute."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request, view) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return True  # unauthenticated: refused by authentication, or a public page
        limit = key.rate_limit_per_minute or settings.MAILHUB_API_RATE_LIMIT_PER_MINUTE
        decision = api_key_rate_check(key_id=key.id, limit=limit)
        self._wait = decision.wait_seconds
        return decision.allowed

    def wait(self) -> float | None:
        return self._wait
