"""The Grafana dashboard drawn without Grafana: every query of every panel asked of Prometheus
over the last minutes (``/api/v1/query_range``), drawn with matplotlib, each panel in a PNG of
its own and all of them in one image laid out on Grafana's grid.

matplotlib comes with the ``bench`` extra (``make dashboard-snapshot`` installs it); neither the
production image nor the dev install carries it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, whatever the environment says

from matplotlib import dates  # after the backend is chosen
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from monitoring.dashboard import Panel, legend
from monitoring.prometheus import PrometheusApi

#: Series drawn per panel at most (the largest); the legend says how many were left out.
MAX_SERIES = 8
#: Grafana's grid: 24 columns; a row unit is about 30 px, a column about 1/24 of 1,600 px.
INCHES_PER_ROW = 0.32
FIGURE_WIDTH = 16.0
COLORS = ("#3274d9", "#56a64b", "#e0b400", "#e02f44", "#8f3bb8", "#ff780a", "#1f9aa8", "#7d6b5d")
THRESHOLD_COLORS = {"green": "#56a64b", "orange": "#ff780a", "red": "#e02f44"}


@dataclass
class Series:
    name: str
    times: list[float]  # unix seconds
    values: list[float]  # NaN where Prometheus had no value


def fetch(
    api: PrometheusApi, panels: Sequence[Panel], *, start: float, end: float, step: float
) -> dict[int, list[Series]]:
    """Every series of every panel's queries between ``start`` and ``end``."""
    data: dict[int, list[Series]] = {}
    for panel in panels:
        series = data.setdefault(panel.id, [])
        for query in panel.queries:
            for result in api.query_range(query.expr, start=start, end=end, step=step):
                points = result["values"]
                series.append(
                    Series(
                        legend(query, result["metric"]),
                        [float(t) for t, _ in points],
                        [float(v) for _, v in points],
                    )
                )
    return data


def format_value(value: float, unit: str) -> str:
    if math.isnan(value) or math.isinf(value):
        return "n/a"
    if unit == "percentunit":
        return f"{value * 100:.1f} %"
    if unit == "s":
        if value < 1:
            return f"{value * 1000:.0f} ms"
        return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"
    suffix = {"reqps": " req/s", "ops": "/s"}.get(unit, "")
    if abs(value) >= 100:
        return f"{value:,.0f}{suffix}"
    return f"{value:.3g}{suffix}"


def _last(values: Sequence[float]) -> float:
    return next((v for v in reversed(values) if not math.isnan(v)), math.nan)


def _draw_stat(axes: Axes, panel: Panel, series: list[Series]) -> None:
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_visible(False)
    if not series:
        axes.text(0.5, 0.45, "no data", ha="center", va="center", fontsize=14, color="#888888")
        return
    first = series[0]
    value = _last(first.values)
    color = COLORS[0]
    for bound, name in panel.thresholds:
        if bound is None or (not math.isnan(value) and value >= bound):
            color = THRESHOLD_COLORS.get(name, name)
    text = dict(panel.mappings).get(f"{value:g}") if not math.isnan(value) else None
    axes.fill_between(first.times, first.values, color=color, alpha=0.15, linewidth=0)
    axes.set_ylim(bottom=min(0.0, *[v for v in first.values if not math.isnan(v)] or [0.0]))
    axes.text(
        0.5,
        0.42,
        text or format_value(value, panel.unit),
        ha="center",
        va="center",
        fontsize=17,
        fontweight="bold",
        color=color,
        transform=axes.transAxes,
    )


def _unit_formatter(unit: str) -> FuncFormatter:
    def formatted(value: float, _position: int) -> str:
        if unit == "percentunit":
            return f"{value * 100:.0f} %"
        if unit == "s":
            return f"{value * 1000:.0f} ms" if 0 < abs(value) < 1 else f"{value:g} s"
        return f"{value:g}"

    return FuncFormatter(formatted)


def _draw_series(axes: Axes, panel: Panel, series: list[Series]) -> None:
    if not series:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
        return

    def size(s: Series) -> float:
        present = [v for v in s.values if not math.isnan(v)]
        return max(present) if present else -math.inf

    shown = sorted(series, key=size, reverse=True)[:MAX_SERIES]
    for index, one in enumerate(sorted(shown, key=lambda s: s.name)):
        times = dates.date2num([datetime.fromtimestamp(t, UTC) for t in one.times])
        axes.plot(
            times, one.values, color=COLORS[index % len(COLORS)], linewidth=1.2, label=one.name
        )
    axes.yaxis.set_major_formatter(_unit_formatter(panel.unit))
    axes.xaxis.set_major_formatter(dates.DateFormatter("%H:%M", tz=UTC))
    axes.xaxis.set_major_locator(_minutes_locator(series))
    axes.tick_params(labelsize=7)
    axes.grid(alpha=0.3, linewidth=0.5)
    axes.set_ylim(bottom=0)
    left_out = len(series) - len(shown)
    axes.legend(
        fontsize=6,
        loc="upper left",
        ncols=2 if len(shown) > 4 else 1,
        title=f"(+{left_out} smaller)" if left_out else None,
        title_fontsize=6,
        frameon=False,
    )


def _minutes_locator(series: list[Series]) -> dates.MinuteLocator:
    # Whole minutes only (labels are HH:MM), about five of them whatever the span.
    times = [t for one in series for t in one.times]
    span = (max(times) - min(times)) / 60 if times else 60
    step = next((s for s in (1, 2, 5, 10, 15, 30) if span / s <= 7), 60)
    return dates.MinuteLocator(byminute=range(0, 60, step), tz=UTC)


def draw_panel(axes: Axes, panel: Panel, series: list[Series]) -> None:
    axes.set_title(panel.title, fontsize=9, loc="left")
    if panel.kind == "stat":
        _draw_stat(axes, panel, series)
    else:
        _draw_series(axes, panel, series)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60]


def draw_each(
    panels: Sequence[Panel], data: dict[int, list[Series]], directory: Path
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for panel in panels:
        width = FIGURE_WIDTH * panel.w / 24
        figure = Figure(figsize=(width, panel.h * INCHES_PER_ROW * 1.3), layout="constrained")
        draw_panel(figure.add_subplot(), panel, data.get(panel.id, []))
        path = directory / f"{panel.id:02d}-{_slug(panel.title)}.png"
        figure.savefig(path, dpi=100)
        written.append(path)
    return written


def draw_grid(
    panels: Sequence[Panel],
    data: dict[int, list[Series]],
    path: Path,
    *,
    title: str,
    dpi: int = 72,
    colors: int = 96,
) -> Path:
    """Every panel where Grafana puts it, in one PNG, reduced to a palette of ``colors``."""
    rows = max(panel.y + panel.h for panel in panels)
    figure = Figure(figsize=(FIGURE_WIDTH, rows * INCHES_PER_ROW + 0.6), layout="constrained")
    figure.suptitle(title, fontsize=11)
    grid = figure.add_gridspec(rows, 24)
    for panel in panels:
        axes = figure.add_subplot(grid[panel.y : panel.y + panel.h, panel.x : panel.x + panel.w])
        draw_panel(axes, panel, data.get(panel.id, []))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    _to_palette(path, colors)
    return path


def _to_palette(path: Path, colors: int) -> None:
    # Flat colours and anti-aliased lines: a palette of ~100 colours looks the same at a third of
    # the size of the full-colour PNG. Pillow comes with matplotlib.
    from PIL import Image

    with Image.open(path) as image:
        reduced = image.convert("RGB").quantize(colors=colors)
    reduced.save(path, optimize=True)
