"""The run as JSON (``var/bench/<UTC time>.json``), for ``benchmarks.charts`` and for comparing
runs: the machine, the commit, the options, every row of the table, the peer comparison (each
round's figures, their medians, the ratios and their targets) and the soak's memory samples.
Pure but for ``write``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from benchmarks.procs import Machine
from benchmarks.table import Row
from benchmarks.versus import Compared, Figures

SCHEMA = 1


def row_dicts(rows: Sequence[Row]) -> list[dict]:
    """Every figure of the table with the heading it sits under; headings themselves are not
    rows."""
    out, section = [], ""
    for row in rows:
        if row.heading:
            section = row.label
            continue
        target = row.target
        out.append(
            {
                "section": section,
                "label": row.label,
                "value": row.value,
                "unit": row.unit,
                "target": {"op": target.op, "bound": target.bound} if target else None,
                "result": row.cells()[4],
            }
        )
    return out


def document(
    *,
    started: datetime,
    finished: datetime,
    commit: str,
    dirty: bool,
    machine: Machine,
    options: dict,
    load: dict[str, Sequence[float]],
    rows: Sequence[Row],
    peer: dict | None = None,
    rounds: Sequence[Figures] = (),
    median: Figures | None = None,
    compared: Sequence[Compared] = (),
    soak: dict | None = None,
) -> dict:
    """The whole run as one JSON-ready dict. ``peer`` describes the peer (name, version,
    settings, processes); ``soak`` is ``{"interval": s, "samples": [{"t": s, "rss": {group:
    bytes}}]}``."""
    return {
        "schema": SCHEMA,
        "started": started.isoformat(),
        "finished": finished.isoformat(),
        "commit": commit,
        "dirty": dirty,
        "machine": asdict(machine),
        "options": options,
        "load_average": {when: list(values) for when, values in load.items()},
        "rows": row_dicts(rows),
        "peer": None
        if peer is None
        else {
            **peer,
            "rounds": list(rounds),
            "median": median,
            "comparison": [c.as_dict() for c in compared],
        },
        "soak": soak,
    }


def file_name(started: datetime) -> str:
    """``2026-11-23T184000Z.json``: sorts by time, and no colon for other file systems."""
    return f"{started:%Y-%m-%dT%H%M%SZ}.json"


def write(document: dict, directory: Path, started: datetime) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(started)
    path.write_text(json.dumps(document, indent=1, default=str) + "\n")
    return path
