"""Rate limits per API key, counted in a store that every API process shares.

The count is a sliding window, approximated the usual way from two fixed one-minute windows:
``estimate = previous_window * (share of it still inside the last minute) + this_window``. It
needs one small row per key instead of a timestamp per request, and has no burst of twice the
limit at a minute boundary the way a plain fixed window has.

The counts live in Postgres (``accounts.models.RateCounter``, one row per key), so every API
process and machine counts together with nothing else to run. Checking and counting a request is
ONE ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` statement: the row lock of the upsert makes
concurrent requests of a key count one after the other, and its WHERE clause (the same
arithmetic as ``rate_check``) leaves the row untouched when the request is refused.

``api.throttling`` applies it to every authenticated API request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.db import connections, router

from accounts.models import RateCounter

WINDOW_SECONDS = 60.0

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


# ``rate_check`` in SQL. `seen` is what the row says of the current window, `before` of the one
# before it; %(remaining)s is the share of the current window still to come.
_SEEN = "CASE WHEN r.window_index = %(index)s THEN r.count ELSE 0 END"
_BEFORE = (
    "CASE WHEN r.window_index = %(index)s THEN r.previous"
    " WHEN r.window_index = %(index)s - 1 THEN r.count ELSE 0 END"
)
_COUNT_SQL = f"""
INSERT INTO api_ratecounter AS r (api_key_id, window_index, count, previous)
VALUES (%(key)s, %(index)s, 1, 0)
ON CONFLICT (api_key_id) DO UPDATE
SET window_index = %(index)s, count = {_SEEN} + 1, previous = {_BEFORE}
WHERE {_BEFORE} * %(remaining)s::float8 + {_SEEN} + 1 <= %(limit)s
RETURNING window_index, count, previous
"""  # noqa: S608 - built from the constants above only
# Sent with the upsert in one query string, which Postgres runs as one implicit transaction.
_ASYNC_COMMIT = "SET LOCAL synchronous_commit TO OFF;"
_STATE_SQL = "SELECT window_index, count, previous FROM api_ratecounter WHERE api_key_id = %s"


def api_key_rate_check(*, key_id: int, limit: int, now: float | None = None) -> RateDecision:
    """Count one request of the key if it is within ``limit`` per minute; say how long to wait
    otherwise."""
    now = time.time() if now is None else now
    index = int(now // WINDOW_SECONDS)
    remaining = 1 - (now - index * WINDOW_SECONDS) / WINDOW_SECONDS
    connection = connections[router.db_for_write(RateCounter)]
    with connection.cursor() as cursor:
        params = {"key": key_id, "index": index, "remaining": remaining, "limit": limit}
        # Every request of a key waits for the row lock of the one before it, held until its
        # commit. Not waiting for that commit's WAL flush shortens the queue; a crash can only
        # lose the last moment's counts. Not when the caller has a transaction open: the
        # setting would last until the caller's commit and make that asynchronous too.
        count = _COUNT_SQL if connection.in_atomic_block else _ASYNC_COMMIT + _COUNT_SQL
        cursor.execute(count, params)
        counted = cursor.fetchone()
        if counted is not None:
            return RateDecision(True, tuple(counted), 0.0)
        # Refused, the row unchanged: read it only to tell the client how long to wait.
        cursor.execute(_STATE_SQL, [key_id])
        state = cursor.fetchone()
    decision = rate_check(state=tuple(state) if state else None, now=now, limit=limit)
    if decision.allowed:
        # Another process moved the row on to a later window in between: try again shortly.
        return RateDecision(False, decision.state, 1.0)
    return decision
