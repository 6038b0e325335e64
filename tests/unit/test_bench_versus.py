"""Mailhub beside its peer: medians over rounds, ratios, targets, the side-by-side table."""

import json
from pathlib import Path

from benchmarks.stats import Target
from benchmarks.versus import (
    COMPARISONS,
    Comparison,
    compare,
    format_comparison,
    median_figures,
)

DRAIN = Comparison("drain rate", "msgs/s", ("drain", "rate"), ("drain", "rate"), Target(">=", 1.3))
TIME = Comparison(
    "enqueue → last delivered", "s", ("backend", "seconds"), ("send_many", "seconds"),
    Target("<=", 0.75),
)  # fmt: skip
CPU = Comparison("CPU, end to end", "ms/msg", ("backend", "cpu"), ("send_many", "cpu"))


def figures(drain_mailhub, drain_peer, backend=20.0, send_many=15.0):
    return {
        "drain": {"mailhub": {"rate": drain_mailhub}, "post_office": {"rate": drain_peer}},
        "backend": {"mailhub": {"seconds": backend, "cpu": 1.2}},
        "send_many": {"post_office": {"seconds": send_many, "cpu": 0.8}},
    }


def test_the_median_of_the_rounds_is_taken_figure_by_figure():
    rounds = [figures(600, 900), figures(700, 1000, backend=18.0), figures(650, None)]
    median = median_figures(rounds)
    assert median["drain"]["mailhub"]["rate"] == 650
    # A round that did not measure a figure does not count towards its median.
    assert median["drain"]["post_office"]["rate"] == 950
    assert median["backend"]["mailhub"]["seconds"] == 20.0


def test_a_figure_that_is_a_dict_has_the_median_of_each_entry():
    rounds = [
        {"drain": {"mailhub": {"cpu_seconds": {"postgres": 1.0, "api": 0.1}}}},
        {"drain": {"mailhub": {"cpu_seconds": {"postgres": 3.0}}}},
        {"drain": {"mailhub": {"cpu_seconds": {"postgres": 2.0, "api": 0.3}}}},
    ]
    median = median_figures(rounds)["drain"]["mailhub"]["cpu_seconds"]
    assert median == {"postgres": 2.0, "api": 0.2}


def test_each_ratio_is_mailhubs_figure_over_the_peers_judged_against_its_target():
    drain, time, cpu = compare(figures(1300, 1000), [DRAIN, TIME, CPU])
    assert drain.ratio == 1.3
    assert drain.result == "met"
    assert round(time.ratio, 3) == 1.333
    assert time.result == "NOT met: 1.8x the limit"
    assert round(cpu.ratio, 6) == 1.5
    assert cpu.result == ""  # a figure shown beside the peer's, with no target


def test_a_figure_one_side_did_not_measure_has_no_ratio_and_no_verdict():
    (drain,) = compare(figures(None, 1000), [DRAIN])
    assert drain.ratio is None
    assert drain.result == "not measured"


def test_the_table_shows_both_figures_the_ratio_the_target_and_the_verdict():
    table = format_comparison(compare(figures(1300, 1000), [DRAIN, TIME]), title="N = 10,000")
    lines = table.splitlines()
    assert lines[0].split() == [
        "Measure", "Mailhub", "post_office", "Unit", "Ratio", "Target", "Result",
    ]  # fmt: skip
    assert set(lines[1]) == {"-"}
    assert lines[2] == "N = 10,000"
    assert lines[3].split()[2:7] == ["1,300", "1,000", "msgs/s", "1.30x", "≥"]
    assert lines[3].endswith("met")
    assert lines[4].endswith("NOT met: 1.8x the limit")
    # Right-aligned: the figures of both systems end in the same columns.
    assert lines[3].index("1,000") + 5 == lines[4].index("15.0") + 4


def test_the_issues_five_targets_are_there():
    targets = [str(c.target) for c in COMPARISONS if c.target]
    # drain, enqueue, enqueue → last delivered twice (backend, batch), CPU per message
    assert targets == ["≥ 1.30 x", "≥ 1.00 x", "≤ 0.75 x", "≤ 0.75 x", "≤ 1.00 x"]


def test_the_rounds_a_run_writes_give_a_median_and_every_ratio():
    fixture = Path(__file__).parent / "fixtures" / "bench-run.json"
    rounds = json.loads(fixture.read_text())["peer"]["rounds"] * 3
    compared = compare(median_figures(rounds))
    assert len(compared) == len(COMPARISONS)
    assert all(c.ratio is not None for c in compared)
