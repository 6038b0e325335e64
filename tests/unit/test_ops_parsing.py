"""Pure pieces of the operator surfaces: durations on the command line, ages in `mailq`, SMTP
reply classes in /metrics."""

import argparse
from datetime import timedelta

import pytest

from deliveries.management.commands._common import parse_duration
from deliveries.management.commands.mailq import _span
from deliveries.metrics import smtp_class


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("12h", timedelta(hours=12)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
        (" 7D ", timedelta(days=7)),
    ],
)
def test_a_duration_is_a_number_and_a_unit(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["30", "d", "30 days", "-1d", "1y", ""])
def test_anything_else_is_refused_with_an_example(text):
    with pytest.raises(argparse.ArgumentTypeError, match="90s, 15m"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (59, "59s"), (60, "1m00s"), (431, "7m11s"), (7500, "2h05m"), (273600, "3d04h")],
)
def test_mailq_shows_an_age_in_two_units(seconds, shown):
    assert _span(seconds) == shown


@pytest.mark.parametrize(
    ("code", "label"), [(250, "2xx"), (451, "4xx"), (554, "5xx"), (None, "none")]
)
def test_a_reply_code_falls_in_its_class(code, label):
    assert smtp_class(code) == label
