"""Per-destination limits: how many connections may carry mail to one domain at once, and how
many attempts may start towards it per minute. A slow or throttling destination then waits for its
own turn instead of tying up every worker; the mail it holds back is not charged an attempt.

The arithmetic is here, pure; ``deliveries.services.sending`` reads the counts from Postgres
under a per-domain lock and applies it when it claims deliveries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class DomainLimit:
    concurrency: int = 0  # connections (sending tasks) at once; 0 = no limit
    per_minute: int = 0  # attempts started per minute; 0 = no limit

    @property
    def unlimited(self) -> bool:
        return not self.concurrency and not self.per_minute


def limit_for(
    domain: str, *, limits: Mapping[str, DomainLimit], default: DomainLimit
) -> DomainLimit:
    return limits.get(domain, default)


def admissible(
    *, wanted: int, limit: DomainLimit, connections: int, started_this_minute: int
) -> int:
    """How many of ``wanted`` deliveries to a domain one more task may start now.

    A task sends its deliveries one after the other over one connection, so it takes one of the
    domain's connections whatever their number; the rate counts every attempt.
    """
    if limit.concurrency and connections >= limit.concurrency:
        return 0
    if limit.per_minute:
        return max(min(wanted, limit.per_minute - started_this_minute), 0)
    return wanted
