"""The arithmetic of the benchmark: percentiles, rates, ratios and targets. Pure functions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks.

    The same definition as numpy's default and ``statistics.quantiles(method="inclusive")``:
    p0 is the minimum, p100 the maximum, and p50 of an even count the mean of the middle two.
    """
    if not values:
        raise ValueError("no values to take a percentile of")
    if not 0 <= q <= 100:
        raise ValueError(f"a percentile is between 0 and 100, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    below = math.floor(position)
    above = math.ceil(position)
    if below == above:
        return ordered[below]
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


@dataclass(frozen=True)
class Spread:
    count: int
    p50: float
    p95: float
    p99: float
    maximum: float


def spread(values: Sequence[float]) -> Spread | None:
    """p50, p95, p99 and the maximum of ``values``; None when there are none."""
    if not values:
        return None
    return Spread(
        count=len(values),
        p50=percentile(values, 50),
        p95=percentile(values, 95),
        p99=percentile(values, 99),
        maximum=max(values),
    )


def rate(count: int, seconds: float) -> float | None:
    """Events per second; None when no time passed (nothing to divide by)."""
    if seconds <= 0:
        return None
    return count / seconds


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is unknown or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


@dataclass(frozen=True)
class Target:
    """A figure the issue asks for: ``value <op> bound``, e.g. ``>= 1000`` req/s."""

    op: str  # one of >=, <=, <, ==
    bound: float
    unit: str = ""

    def __post_init__(self) -> None:
        if self.op not in (">=", "<=", "<", "=="):
            raise ValueError(f"unknown comparison {self.op!r}")

    def __str__(self) -> str:
        op = {">=": "≥", "<=": "≤", "<": "<", "==": "="}[self.op]
        unit = f" {self.unit}" if self.unit else ""
        return f"{op} {format_number(self.bound)}{unit}"

    def met(self, value: float) -> bool:
        if self.op == ">=":
            return value >= self.bound
        if self.op == "<=":
            return value <= self.bound
        if self.op == "<":
            return value < self.bound
        return value == self.bound

    def verdict(self, value: float | None) -> str:
        """``met``, or ``NOT met`` with by how much, in the terms of the target."""
        if value is None:
            return "not measured"
        if self.met(value):
            return "met"
        if self.op == ">=":
            if self.bound == 0:
                return "NOT met"
            return f"NOT met: {value / self.bound:.0%} of target"
        if self.op == "==":
            return f"NOT met: {format_number(value)}, must be {format_number(self.bound)}"
        if self.bound == 0:
            return "NOT met"
        return f"NOT met: {value / self.bound:.1f}x the limit"


def format_number(value: float | None) -> str:
    """Figures as a reader takes them in: thousands grouped, three significant digits or so.

    1234567 -> 1,234,567; 1234.5 -> 1,234; 123.45 -> 123; 12.345 -> 12.3; 1.2345 -> 1.23;
    0.01234 -> 0.0123; integers stay whole.
    """
    if value is None:
        return "-"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 100):
        return f"{int(value):,}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude == 0:
        return "0"
    return f"{value:.3g}"
