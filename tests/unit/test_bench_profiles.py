"""Summaries of py-spy's raw stacks: where the processes' CPU goes."""

import pytest

from benchmarks.profiles import OUTSIDE, Frame, format_summary, parse_frame, parse_raw, summarize

RAW = """\
process 10:"python -m celery";process 11:"python -m celery";run (celery/worker.py:5);\
deliver_messages (deliveries/tasks.py:48);deliveries_claim (deliveries/services/sending.py:70);\
execute (django/db/backends/utils.py:100);_execute (django/db/backends/utils.py:105) 6
process 10:"python -m celery";run (celery/worker.py:5);deliver_messages (deliveries/tasks.py:48);\
build_mime (deliveries/mime.py:69);as_bytes (email/message.py:20) 3
process 10:"python -m celery";run (celery/worker.py:5);_read (amqp/transport.py:30) 1
"""


def test_a_frame_is_its_function_file_and_line_and_process_frames_are_dropped():
    frame = parse_frame("as_bytes (email/message.py:20)")
    assert frame == Frame("as_bytes", "email/message.py", 20)
    assert parse_frame('process 10:"python -m celery -A mailhub"') is None
    assert parse_frame("<module> (manage.py)") == Frame("<module>", "manage.py", None)


def test_a_frame_knows_its_top_level_module_and_whether_it_is_mailhub_code():
    assert Frame("f", "django/db/models/query.py").module == "django"
    assert Frame("recv", "ssl.py").module == "ssl"
    assert Frame("f", "deliveries/services/sending.py").in_project
    assert not Frame("f", "celery/app/trace.py").in_project


def test_raw_lines_become_stacks_outermost_first_with_their_counts():
    stacks = parse_raw(RAW + "garbage without a count\n")
    assert [count for _, count in stacks] == [6, 3, 1]
    frames, _ = stacks[0]
    assert frames[0].function == "run"
    assert frames[-1] == Frame("_execute", "django/db/backends/utils.py", 105)


def test_the_summary_shares_samples_by_module_by_mailhub_line_and_by_function():
    summary = summarize(parse_raw(RAW))
    assert summary.samples == 10
    assert summary.by_module == [("django", 0.6), ("email", 0.3), ("amqp", 0.1)]
    assert summary.by_project_line == [
        ("deliveries_claim (deliveries/services/sending.py:70)", 0.6),
        ("build_mime (deliveries/mime.py:69)", 0.3),
        (OUTSIDE, 0.1),
    ]
    assert summary.by_function[0] == ("_execute (django/db/backends/utils.py)", 0.6)
    assert summary.by_project_function == [
        ("deliver_messages (deliveries/tasks.py)", 0.9),
        ("deliveries_claim (deliveries/services/sending.py)", 0.6),
        ("build_mime (deliveries/mime.py)", 0.3),
    ]


def test_a_function_on_the_stack_twice_counts_once_per_sample():
    raw = "f (deliveries/a.py:1);g (deliveries/a.py:2);f (deliveries/a.py:3) 4\n"
    summary = summarize(parse_raw(raw))
    assert dict(summary.by_project_function) == {
        "f (deliveries/a.py)": 1.0,
        "g (deliveries/a.py)": 1.0,
    }


def test_a_summary_of_no_samples_says_so():
    summary = summarize([])
    assert summary.samples == 0
    assert "no samples" in format_summary("api, single phase", summary, rate=50)


def test_the_printed_summary_gives_percentages_and_the_time_sampled():
    text = format_summary("worker general, e2e phase", summarize(parse_raw(RAW)), rate=50)
    assert text.splitlines()[0] == (
        "worker general, e2e phase: 10 samples holding the GIL at 50 Hz (~0.2 s)"
    )
    assert "django 60.0%" in text
    assert " 60.0%  deliveries_claim (deliveries/services/sending.py:70)" in text


@pytest.mark.parametrize("top", [1, 2])
def test_only_the_largest_entries_are_kept(top):
    summary = summarize(parse_raw(RAW), top=top)
    assert len(summary.by_module) == len(summary.by_function) == top
    assert len(summary.by_project_function) == top
