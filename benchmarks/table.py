"""The one table the benchmark prints (and README.md's "Measured" section copies). Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.stats import Target, format_number

HEADERS = ("Measure", "Value", "Unit", "Target", "Result")


@dataclass(frozen=True)
class Row:
    """One figure; ``value`` a number (formatted here), a word (``"missing"``) or None."""

    label: str
    value: float | str | None = None
    unit: str = ""
    target: Target | None = None
    heading: bool = False
    # For a target that is not a number ("the plan uses the index"): what is wanted, and whether
    # the value is it.
    wanted: str = ""
    ok: bool | None = None

    def cells(self) -> tuple[str, str, str, str, str]:
        if self.heading:
            return (self.label, "", "", "", "")
        if isinstance(self.value, str):
            value, number = self.value, None
        else:
            value, number = format_number(self.value), self.value
        if self.target is not None:
            target, result = str(self.target), self.target.verdict(number)
        elif self.ok is not None:
            target, result = self.wanted, "met" if self.ok else "NOT met"
        else:
            target, result = self.wanted, ""
        return ("  " + self.label, value, self.unit, target, result)


def heading(title: str) -> Row:
    return Row(title, heading=True)


def format_table(rows: Sequence[Row]) -> str:
    """A plain-text table: headings on lines of their own, values right-aligned."""
    cells = [row.cells() for row in rows]
    body = [cell for row, cell in zip(rows, cells, strict=True) if not row.heading]
    widths = [max([len(HEADERS[i])] + [len(cell[i]) for cell in body]) for i in range(len(HEADERS))]
    # A heading may be wider than the first column; it overflows into the empty cells after it.

    def line(cell: Sequence[str]) -> str:
        parts = [
            cell[0].ljust(widths[0]),
            cell[1].rjust(widths[1]),
            cell[2].ljust(widths[2]),
            cell[3].ljust(widths[3]),
            cell[4],
        ]
        return "  ".join(parts).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    out = [line(HEADERS), rule]
    for row, cell in zip(rows, cells, strict=True):
        out.append(cell[0] if row.heading else line(cell))
    return "\n".join(out)
