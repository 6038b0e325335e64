"""Charts of one benchmark run, drawn from its JSON (``benchmarks.report``) with matplotlib
(the ``bench`` extra; ./scripts/bench installs it):

    python -m benchmarks.charts var/bench/2026-12-04T113132Z.json --out docs/bench/

- ``peers.png``: Mailhub beside django-post-office, phase by phase: rates, enqueue → last
  delivered, CPU per message; each target drawn where it lies (post_office's figure times the
  ratio issue 15 asks for);
- ``ratios.png``: every ratio Mailhub / post_office against its target;
- ``targets.png`` (a full run): every other figure that has a numeric target, as a share of it;
- ``soak-memory.png`` (a run with ``--soak``): the RSS of each group of processes over time.

Each chart names the machine, the commit and the date of the run under its title.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, whatever the environment says

from matplotlib.axes import Axes  # after the backend is chosen
from matplotlib.figure import Figure

from benchmarks.stats import format_number

MAILHUB_COLOR = "#1f6f8b"
PEER_COLOR = "#c98c2b"
MET_COLOR = "#3c8d3c"
NOT_MET_COLOR = "#c0392b"
INFO_COLOR = "#8a8a8a"
MIB = 1024 * 1024
PANELS = (  # unit of a comparison -> the panel it is drawn in
    ("msgs/s", "Rate, msgs/s (higher is better)"),
    ("s", "Enqueue → last delivered, s (lower is better)"),
    ("ms/msg", "CPU per delivered message, ms (lower is better)"),
)


def subtitle(document: dict) -> str:
    box = document["machine"]
    options = document.get("options", {})
    peer = document.get("peer") or {}
    rounds = len(peer.get("rounds") or []) or 1
    return (
        f"{box['cpus']} CPUs ({box['cpu_model']}), {box['memory_bytes'] / 2**30:.0f} GiB, "
        f"Python {box['python']}; commit {document['commit']}"
        f"{' (modified)' if document.get('dirty') else ''}, {document['started'][:16]} UTC; "
        f"N = {options.get('messages', '?'):,}, median of {rounds} round(s)"
    )


def _label(text: str, width: int = 24) -> str:
    return "\n".join(textwrap.wrap(text, width))


def _met(result: str) -> bool:
    return result == "met"


def _target_value(item: dict) -> float | None:
    target, peer = item.get("target"), item.get("peer")
    return None if target is None or peer is None else peer * target["bound"]


def draw_peers(document: dict, path: Path) -> Path | None:
    comparison = (document.get("peer") or {}).get("comparison") or []
    panels = [(title, [c for c in comparison if c["unit"] == unit]) for unit, title in PANELS]
    panels = [(title, items) for title, items in panels if items]
    if not panels:
        return None
    figure = Figure(figsize=(5.2 * len(panels), 5.6), layout="constrained")
    figure.suptitle("Mailhub (shipped defaults) beside django-post-office, same run")
    figure.supxlabel(subtitle(document), fontsize=8)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, items) in zip(axes, panels, strict=True):
        _draw_pairs(ax, title, items)
    axes[0].legend(loc="upper left", fontsize=8)
    figure.savefig(path, dpi=110)
    return path


def _draw_pairs(ax: Axes, title: str, items: list[dict]) -> None:
    width = 0.38
    positions = range(len(items))
    mailhub = [c["mailhub"] or 0 for c in items]
    peer = [c["peer"] or 0 for c in items]
    ax.bar([x - width / 2 for x in positions], mailhub, width, label="Mailhub", color=MAILHUB_COLOR)
    ax.bar([x + width / 2 for x in positions], peer, width, label="post_office", color=PEER_COLOR)
    targets = [(x, _target_value(c), c["result"]) for x, c in zip(positions, items, strict=True)]
    for x, value, result in targets:
        if value is None:
            continue
        color = MET_COLOR if _met(result) else NOT_MET_COLOR
        ax.hlines(value, x - width, x, colors=color, linestyles="--", linewidth=2)
    if any(value is not None for _, value, _ in targets):
        ax.plot([], [], "--", color=INFO_COLOR, label="Mailhub's target (green: met)")
    ax.set_title(title, fontsize=10)
    ax.set_xticks(list(positions), [_label(c["label"]) for c in items], fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    for x, value in zip(positions, mailhub, strict=True):
        ax.annotate(
            format_number(value), (x - width / 2, value), ha="center", va="bottom", fontsize=7
        )
    for x, value in zip(positions, peer, strict=True):
        ax.annotate(
            format_number(value), (x + width / 2, value), ha="center", va="bottom", fontsize=7
        )


def draw_ratios(document: dict, path: Path) -> Path | None:
    comparison = [
        c for c in (document.get("peer") or {}).get("comparison") or [] if c["ratio"] is not None
    ]
    if not comparison:
        return None
    figure = Figure(figsize=(9, 0.55 * len(comparison) + 1.8), layout="constrained")
    figure.suptitle("Mailhub / django-post-office, each figure (1.0 = the same)")
    figure.supxlabel(subtitle(document), fontsize=8)
    ax = figure.subplots()
    rows = list(reversed(comparison))
    colors = [
        INFO_COLOR if c["target"] is None else MET_COLOR if _met(c["result"]) else NOT_MET_COLOR
        for c in rows
    ]
    ax.barh(range(len(rows)), [c["ratio"] for c in rows], color=colors)
    for y, c in enumerate(rows):
        if c["target"] is not None:
            bound = c["target"]["bound"]
            ax.vlines(bound, y - 0.4, y + 0.4, colors="black", linewidth=2)
            sign = "≥" if c["target"]["op"] == ">=" else "≤"
            ax.annotate(f" target {sign} {bound:g}", (bound, y + 0.25), fontsize=7)
        ax.annotate(f" {c['ratio']:.2f}x", (c["ratio"], y), va="center", fontsize=8)
    ax.axvline(1.0, color=INFO_COLOR, linestyle=":", linewidth=1)
    ax.set_yticks(range(len(rows)), [_label(c["label"], 48) for c in rows], fontsize=8)
    ax.set_xlabel("ratio Mailhub / post_office (green: target met, red: not, grey: no target)")
    ax.grid(axis="x", alpha=0.3)
    figure.savefig(path, dpi=110)
    return path


def draw_targets(document: dict, path: Path) -> Path | None:
    rows = [
        r
        for r in document.get("rows", [])
        if r["target"]
        and isinstance(r["value"], int | float)
        and r["target"]["op"] in (">=", "<=", "<")
        and r["target"]["bound"]
    ]
    if not rows:
        return None
    figure = Figure(figsize=(9, 0.5 * len(rows) + 1.8), layout="constrained")
    figure.suptitle("Every figure with a target, as a share of it")
    figure.supxlabel(subtitle(document), fontsize=8)
    ax = figure.subplots()
    rows.reverse()
    shares = [r["value"] * 100 / r["target"]["bound"] for r in rows]
    colors = [MET_COLOR if _met(r["result"]) else NOT_MET_COLOR for r in rows]
    ax.barh(range(len(rows)), shares, color=colors)
    ax.axvline(100, color="black", linewidth=1)
    for y, (r, share) in enumerate(zip(rows, shares, strict=True)):
        sign = {">=": "≥", "<=": "≤", "<": "<"}[r["target"]["op"]]
        ax.annotate(
            f" {format_number(r['value'])} {r['unit']} (target {sign} {r['target']['bound']:g})",
            (share, y),
            va="center",
            fontsize=7,
        )
    labels = [_label(f"{r['section']}: {r['label']}", 60) for r in rows]
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.set_xlabel("% of the target (≥ targets: more is better; ≤ and < targets: less is better)")
    ax.grid(axis="x", alpha=0.3)
    figure.savefig(path, dpi=110)
    return path


def draw_soak(document: dict, path: Path) -> Path | None:
    soak = document.get("soak")
    if not soak or not soak.get("samples"):
        return None
    samples = soak["samples"]
    groups = sorted({g for s in samples for g in s["rss"] if g.startswith(("worker", "api"))})
    figure = Figure(figsize=(9, 5), layout="constrained")
    figure.suptitle(f"Memory during the soak, sampled every {soak['interval']:g} s")
    figure.supxlabel(subtitle(document), fontsize=8)
    ax = figure.subplots()
    for group in groups:
        points = [(s["t"], s["rss"][group] / MIB) for s in samples if group in s["rss"]]
        ax.plot([t for t, _ in points], [mib for _, mib in points], label=group)
    ax.set_xlabel("seconds since the soak started")
    ax.set_ylabel("RSS summed over the group's processes, MiB")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.savefig(path, dpi=110)
    return path


CHARTS = {
    "peers.png": draw_peers,
    "ratios.png": draw_ratios,
    "targets.png": draw_targets,
    "soak-memory.png": draw_soak,
}


def draw(document: dict, out: Path) -> list[Path]:
    """Every chart the run has figures for, into ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [chart(document, out / name) for name, chart in CHARTS.items()]
    return [path for path in written if path is not None]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.charts", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run", type=Path, help="a run's JSON (var/bench/<UTC time>.json)")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"), help="default docs/bench")
    args = parser.parse_args(argv)
    for path in draw(json.loads(args.run.read_text()), args.out):
        print(path)


if __name__ == "__main__":
    main()
