"""The benchmark's one table."""

from benchmarks.stats import Target
from benchmarks.table import Row, format_table, heading


def test_the_table_aligns_values_right_and_judges_each_figure_against_its_target():
    table = format_table(
        [
            heading("API single-message accept"),
            Row("rate", 412.0, "req/s", Target(">=", 1000)),
            Row("latency p99", 48.25, "ms", Target("<=", 100)),
        ]
    )
    lines = table.splitlines()
    assert lines[0].split() == ["Measure", "Value", "Unit", "Target", "Result"]
    assert set(lines[1]) == {"-"}
    assert lines[2] == "API single-message accept"
    assert lines[3].split()[:3] == ["rate", "412", "req/s"]
    assert lines[3].endswith("NOT met: 41% of target")
    assert lines[4].endswith("met")
    # Right-aligned: the values end in the same column.
    assert lines[3].index("412") + 3 == lines[4].index("48.2") + 4


def test_a_row_without_a_target_has_no_verdict():
    line = format_table([Row("1 connection", 2100.0, "msgs/s")]).splitlines()[2]
    assert line.split() == ["1", "connection", "2,100", "msgs/s"]


def test_a_word_value_is_shown_as_it_is_and_judged_by_its_own_check():
    rows = [
        Row("due query reads delivery_due", "no", wanted="yes", ok=False),
        Row("batch endpoint", "missing", "", Target(">=", 5000)),
    ]
    lines = format_table(rows).splitlines()
    assert lines[2].split()[-4:] == ["no", "yes", "NOT", "met"]
    assert lines[3].endswith("not measured")


def test_a_long_heading_does_not_widen_the_first_column():
    rows = [heading("A heading much longer than any of the labels below it"), Row("p50", 1.0, "s")]
    lines = format_table(rows).splitlines()
    assert lines[2] == "A heading much longer than any of the labels below it"
    assert lines[3].startswith("  p50    ")
