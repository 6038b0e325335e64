"""Mailhub beside its peer: each figure of both, their ratio, and issue 15's target for that
ratio, as a table. Pure.

A round of the peer comparison measures, with the same N into the same sink, phases by
*kind* and *system*: ``figures[kind][system]`` is a dict of numbers (``rate``, ``seconds``,
``enqueue_rate``, ``cpu_ms_per_msg`` ...). Several rounds give one figure each; the table shows
their median.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.stats import Target, format_number, ratio

MAILHUB = "mailhub"
PEER = "post_office"
Figures = dict[str, dict[str, dict[str, Any]]]  # kind -> system -> name -> value

HEADERS = ("Measure", "Mailhub", "post_office", "Unit", "Ratio", "Target", "Result")


@dataclass(frozen=True)
class Comparison:
    """One figure of Mailhub's (``mailhub``: kind and name) beside one of the peer's; the
    target, when there is one, is on ``mailhub / peer``."""

    label: str
    unit: str
    mailhub: tuple[str, str]
    peer: tuple[str, str]
    target: Target | None = None


#: Issue 15's targets, with Mailhub's shipped defaults, as ratios to post_office in one run.
COMPARISONS = (
    Comparison(
        "drain rate: the workers alone on a queued backlog",
        "msgs/s",
        ("drain", "rate"),
        ("drain", "rate"),
        Target(">=", 1.3, "x"),
    ),
    Comparison(
        "enqueue rate: email backend, 100 per call / send_many of 100",
        "msgs/s",
        ("drain", "enqueue_rate"),
        ("drain", "enqueue_rate"),
        Target(">=", 1.0, "x"),
    ),
    Comparison(
        "enqueue → last delivered: email backend / send_many",
        "s",
        ("backend", "seconds"),
        ("send_many", "seconds"),
        Target("<=", 0.75, "x"),
    ),
    Comparison(
        "enqueue → last delivered: POST /messages/batch / send_many",
        "s",
        ("batch", "seconds"),
        ("send_many", "seconds"),
        Target("<=", 0.75, "x"),
    ),
    Comparison(
        "CPU per delivered msg, workers + Postgres: drain",
        "ms/msg",
        ("drain", "cpu_ms_per_msg"),
        ("drain", "cpu_ms_per_msg"),
        Target("<=", 1.0, "x"),
    ),
    Comparison(
        "CPU per delivered msg, workers + Postgres: email backend / send_many, end to end",
        "ms/msg",
        ("backend", "cpu_ms_per_msg"),
        ("send_many", "cpu_ms_per_msg"),
    ),
    Comparison(
        "drain rate, Mailhub DKIM-signing every message (post_office signs none)",
        "msgs/s",
        ("signed", "rate"),
        ("drain", "rate"),
    ),
    Comparison(
        "CPU per delivered msg, workers + Postgres: that signed drain / drain",
        "ms/msg",
        ("signed", "cpu_ms_per_msg"),
        ("drain", "cpu_ms_per_msg"),
    ),
    Comparison(
        "enqueue rate while delivering: email backend / send_many",
        "msgs/s",
        ("backend", "enqueue_rate"),
        ("send_many", "enqueue_rate"),
    ),
    Comparison(
        "enqueue CPU in the application's process: email backend / send_many",
        "ms/msg",
        ("drain", "client_cpu_ms_per_msg"),
        ("drain", "client_cpu_ms_per_msg"),
    ),
)


def median_figures(rounds: Sequence[Figures]) -> Figures:
    """Each figure's median over the rounds that measured it (None where none did); a figure
    that is itself a dict of numbers (CPU seconds by group) has the median of each entry."""
    merged: Figures = {}
    for figures in rounds:
        for kind, systems in figures.items():
            for system, values in systems.items():
                merged.setdefault(kind, {}).setdefault(system, {}).update(dict.fromkeys(values))
    for kind, systems in merged.items():
        for system, values in systems.items():
            for name in values:
                values[name] = _median(
                    [figures.get(kind, {}).get(system, {}).get(name) for figures in rounds]
                )
    return merged


def _median(values: list) -> Any:
    present = [value for value in values if value is not None]
    if not present:
        return None
    if all(isinstance(value, dict) for value in present):
        keys = dict.fromkeys(key for value in present for key in value)
        return {key: _median([value.get(key) for value in present]) for key in keys}
    if all(isinstance(value, int | float) for value in present):
        return statistics.median(present)
    return present[0]


def figure(figures: Figures, system: str, where: tuple[str, str]) -> float | None:
    kind, name = where
    return figures.get(kind, {}).get(system, {}).get(name)


@dataclass(frozen=True)
class Compared:
    comparison: Comparison
    mailhub: float | None
    peer: float | None

    @property
    def ratio(self) -> float | None:
        return ratio(self.mailhub, self.peer)

    @property
    def result(self) -> str:
        target = self.comparison.target
        return target.verdict(self.ratio) if target is not None else ""

    def as_dict(self) -> dict:
        target = self.comparison.target
        return {
            "label": self.comparison.label,
            "unit": self.comparison.unit,
            "mailhub": self.mailhub,
            "peer": self.peer,
            "ratio": self.ratio,
            "target": {"op": target.op, "bound": target.bound} if target else None,
            "result": self.result,
        }


def compare(figures: Figures, comparisons: Sequence[Comparison] = COMPARISONS) -> list[Compared]:
    return [
        Compared(c, figure(figures, MAILHUB, c.mailhub), figure(figures, PEER, c.peer))
        for c in comparisons
    ]


def format_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def format_comparison(compared: Sequence[Compared], *, title: str = "") -> str:
    """The side-by-side table, in the style of ``benchmarks.table``: values right-aligned."""
    cells = [
        (
            "  " + c.comparison.label,
            format_number(c.mailhub),
            format_number(c.peer),
            c.comparison.unit,
            format_ratio(c.ratio),
            str(c.comparison.target) if c.comparison.target else "",
            c.result,
        )
        for c in compared
    ]
    widths = [max([len(HEADERS[i])] + [len(cell[i]) for cell in cells]) for i in range(6)]
    right = {1, 2, 4}

    def line(cell: Sequence[str]) -> str:
        parts = [
            cell[i].rjust(widths[i]) if i in right else cell[i].ljust(widths[i]) for i in range(6)
        ]
        return "  ".join([*parts, cell[6]]).rstrip()

    out = [line(HEADERS), "-" * (sum(widths) + 2 * 6 + 8)]
    if title:
        out.append(title)
    out += [line(cell) for cell in cells]
    return "\n".join(out)
