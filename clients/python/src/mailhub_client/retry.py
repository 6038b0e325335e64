"""When to try a request again, and how long to wait first (pure: no I/O, no clock of its own).

A request is tried again after a connection error, a ``429`` or a ``503``, waiting what the
answer's ``Retry-After`` says, else an exponential backoff with full jitter; never more than
``attempts`` tries in all, and never past ``max_elapsed`` seconds since the first: a wait that
would end later gives up at once, with the last error (a ``RateLimited`` carries how long
Mailhub asked to wait, for the caller to schedule).

Only what cannot be done twice by a replay is retried (``Exchange`` in ``_core`` decides): a
request refused before any work (``429``, a connection never made) always; one that may have
reached Mailhub (a ``503``, a dropped connection) only when it is safe to repeat: a read, a PUT
or DELETE, or a POST carrying an ``Idempotency-Key``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

__all__ = ["NO_RETRY", "RetryPolicy", "backoff", "parse_retry_after"]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the client tries. ``RetryPolicy(attempts=1)`` (``NO_RETRY``) never retries."""

    #: Tries in all, the first included.
    attempts: int = 4
    #: The first backoff is up to ``backoff_base`` seconds, doubling with each retry ...
    backoff_base: float = 0.5
    #: ... up to this.
    backoff_cap: float = 8.0
    #: No retry starts later than this many seconds after the first try began.
    max_elapsed: float = 30.0
    #: The answers retried (429 always; the others when the request is safe to repeat).
    statuses: frozenset[int] = field(default=frozenset({429, 503}))

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts is at least 1 (the first try)")
        if self.backoff_base < 0 or self.backoff_cap < 0 or self.max_elapsed < 0:
            raise ValueError("backoff_base, backoff_cap and max_elapsed are not negative")

    def delay(
        self,
        *,
        attempt: int,
        elapsed: float,
        retry_after: float | None = None,
        rng: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait before try ``attempt + 1``, after try ``attempt`` (from 1) failed
        ``elapsed`` seconds after the first began; ``None``: give up."""
        if attempt >= self.attempts:
            return None
        if retry_after is not None:
            # What the server asked for, plus a little spread so that the clients it refused
            # together do not all come back in the same instant.
            wait = retry_after + rng() * min(1.0, retry_after / 10)
        else:
            wait = backoff(attempt, base=self.backoff_base, cap=self.backoff_cap, rng=rng)
        if elapsed + wait > self.max_elapsed:
            return None
        return wait


NO_RETRY = RetryPolicy(attempts=1)


def backoff(
    attempt: int, *, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with full jitter: uniform in ``[0, min(cap, base * 2**(attempt-1))]``
    after try ``attempt`` (from 1). Full jitter spreads clients that failed together."""
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 62))
    return rng() * ceiling


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: delay-seconds (``"120"``) or an HTTP date, ``0`` for a date
    passed already, ``None`` when absent or unreadable (RFC 9110 section 10.2.3)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; "-0000" in RFC 2822 means "zone unknown"
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())
