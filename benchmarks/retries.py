"""The retry phase's arithmetic (pure): how long each retry waited, and whether that is what the
backoff policy allows.

A delivery deferred at its attempt ``n`` gets ``next_attempt_at = end of attempt n + delay(n)``,
``delay(n)`` between ``full * (1 - jitter)`` and ``full = min(cap, base * factor ** (n - 1))``
(``deliveries.policy.RetryPolicy``); then the dispatcher, ticking every interval, publishes it
and a worker starts attempt ``n + 1``. So the wait from the end of one attempt to the start of
the next is the policy's delay plus at most a tick and the time to take the task.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from deliveries.policy import RetryPolicy


@dataclass(frozen=True)
class AttemptTimes:
    delivery_id: int
    number: int
    started_at: datetime
    duration_ms: int | None


@dataclass(frozen=True)
class RetryWait:
    after_attempt: int  # the attempt that was deferred
    seconds: float  # from its end to the start of the next attempt
    lowest: float  # what the policy allows, without the dispatcher's share
    highest: float

    def within(self, slack: float) -> bool:
        """Whether the wait is the policy's, allowing ``slack`` seconds for the dispatcher."""
        return self.lowest <= self.seconds <= self.highest + slack


def policy_bounds(policy: RetryPolicy, attempt: int) -> tuple[float, float]:
    """The shortest and the longest delay the policy gives after ``attempt`` failed."""
    longest = policy.delay(attempt, rand=lambda: 0.0) / timedelta(seconds=1)
    shortest = policy.delay(attempt, rand=lambda: 1.0) / timedelta(seconds=1)
    return shortest, longest


def retry_waits(attempts: Iterable[AttemptTimes], policy: RetryPolicy) -> list[RetryWait]:
    """Each wait between consecutive attempts of the same delivery."""
    by_delivery: dict[int, list[AttemptTimes]] = {}
    for attempt in attempts:
        by_delivery.setdefault(attempt.delivery_id, []).append(attempt)
    waits = []
    for tries in by_delivery.values():
        tries.sort(key=lambda attempt: attempt.number)
        for before, after in pairwise(tries):
            ended = before.started_at + timedelta(milliseconds=before.duration_ms or 0)
            lowest, highest = policy_bounds(policy, before.number)
            waits.append(
                RetryWait(
                    after_attempt=before.number,
                    seconds=(after.started_at - ended).total_seconds(),
                    lowest=lowest,
                    highest=highest,
                )
            )
    return waits
