"""The benchmark's arithmetic: percentiles, rates, ratios and verdicts against the targets."""

import statistics

import pytest

from benchmarks.stats import Target, format_number, percentile, rate, ratio, spread


def test_percentiles_interpolate_between_ranks_like_statistics_quantiles():
    values = [float(v) for v in range(1, 101)]
    quartiles = statistics.quantiles(values, n=100, method="inclusive")
    assert percentile(values, 50) == 50.5
    assert percentile(values, 95) == pytest.approx(quartiles[94])
    assert percentile(values, 99) == pytest.approx(quartiles[98])


def test_the_0th_and_100th_percentiles_are_the_minimum_and_maximum_in_any_order():
    values = [7.0, 1.0, 3.0, 9.0, 5.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 9.0
    assert percentile(values, 50) == 5.0


def test_a_percentile_of_one_value_is_that_value():
    assert percentile([0.25], 99) == 0.25


def test_a_percentile_of_nothing_or_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


def test_spread_gives_p50_p95_p99_and_the_maximum_and_none_for_no_values():
    measured = spread([float(v) for v in range(1000)])
    assert (measured.count, measured.p50, measured.maximum) == (1000, 499.5, 999.0)
    assert measured.p95 == pytest.approx(949.05)
    assert measured.p99 == pytest.approx(989.01)
    assert spread([]) is None


def test_a_rate_is_a_count_per_second_and_unknown_when_no_time_passed():
    assert rate(10_000, 4.0) == 2500.0
    assert rate(10, 0.0) is None


def test_a_ratio_is_unknown_when_either_side_is():
    assert ratio(1500.0, 2000.0) == 0.75
    assert ratio(None, 2000.0) is None
    assert ratio(1500.0, None) is None
    assert ratio(1500.0, 0.0) is None


def test_a_floor_target_is_met_at_its_bound_and_says_how_short_it_falls():
    target = Target(">=", 1000, "req/s")
    assert target.verdict(1000) == "met"
    assert target.verdict(412) == "NOT met: 41% of target"
    assert str(target) == "≥ 1,000 req/s"


def test_a_ceiling_target_says_by_how_many_times_it_is_exceeded():
    assert Target("<=", 100).verdict(100) == "met"
    assert Target("<=", 100).verdict(250) == "NOT met: 2.5x the limit"
    assert Target("<", 2).verdict(2) == "NOT met: 1.0x the limit"
    assert Target("<", 2).verdict(1.3) == "met"


def test_an_exact_target_names_the_value_it_wanted():
    assert Target("==", 0).verdict(0) == "met"
    assert Target("==", 0).verdict(3) == "NOT met: 3, must be 0"


def test_a_figure_never_measured_is_not_judged():
    assert Target(">=", 5000).verdict(None) == "not measured"


def test_an_unknown_comparison_is_refused():
    with pytest.raises(ValueError, match="unknown comparison"):
        Target(">", 1)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (1_234_567, "1,234,567"),
        (1234.5, "1,234"),
        (123.45, "123"),
        (12.345, "12.3"),
        (1.2345, "1.23"),
        (0.01234, "0.0123"),
        (0, "0"),
        (0.0, "0"),
        (None, "-"),
    ],
)
def test_numbers_are_shown_with_about_three_significant_digits(value, shown):
    assert format_number(value) == shown
