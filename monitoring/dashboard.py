"""The panels of the Grafana dashboard (deploy/grafana/mailhub-dashboard.json), as data: what
each one asks Prometheus and where it sits on Grafana's 24-column grid."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "mailhub-dashboard.json"

_TEMPLATE_LABEL = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class Query:
    ref: str
    expr: str
    legend: str  # Grafana's legendFormat: "{{type}}", "p99", ""


@dataclass(frozen=True)
class Panel:
    id: int
    title: str
    kind: str  # "stat" or "timeseries"
    unit: str  # Grafana's unit: "none", "short", "s", "percentunit", "reqps"
    x: int
    y: int
    w: int
    h: int
    queries: tuple[Query, ...]
    # A stat's colour steps, lowest first: (from this value on or None for the base, colour).
    thresholds: tuple[tuple[float | None, str], ...] = ()
    # A stat's value mappings: ("1", "up"), ...
    mappings: tuple[tuple[str, str], ...] = ()


def panels(path: Path = DASHBOARD) -> list[Panel]:
    """Every panel, in reading order (top to bottom, left to right)."""
    document = json.loads(path.read_text())
    found = []
    for panel in document["panels"]:
        grid = panel["gridPos"]
        queries = tuple(
            Query(target["refId"], target["expr"], target.get("legendFormat", ""))
            for target in panel.get("targets", [])
        )
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        steps = defaults.get("thresholds", {}).get("steps", [])
        mappings = [
            (value, shown["text"])
            for mapping in defaults.get("mappings", [])
            if mapping.get("type") == "value"
            for value, shown in mapping["options"].items()
        ]
        found.append(
            Panel(
                panel["id"],
                panel["title"],
                panel["type"],
                defaults.get("unit", "short"),
                grid["x"],
                grid["y"],
                grid["w"],
                grid["h"],
                queries,
                tuple((step["value"], step["color"]) for step in steps),
                tuple(mappings),
            )
        )
    return sorted(found, key=lambda p: (p.y, p.x))


def legend(query: Query, labels: dict[str, str]) -> str:
    """The series' name as Grafana shows it: the legend format with its labels filled in, or
    the labels themselves when that leaves nothing."""
    filled = _TEMPLATE_LABEL.sub(lambda match: labels.get(match[1], ""), query.legend).strip()
    if filled:
        return filled
    shown = {name: value for name, value in labels.items() if name != "__name__"}
    return ", ".join(f"{name}={value}" for name, value in sorted(shown.items())) or query.ref
