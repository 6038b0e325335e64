"""What the benchmark's sink reads from a message, and the CPU accounting of its processes."""

from email.message import EmailMessage
from email.policy import SMTP

from benchmarks.procs import MemoryPeak, cpu_between
from benchmarks.sink import message_id_of, phase_of


def test_the_message_id_is_read_from_the_headers_without_its_line_ending():
    mime = EmailMessage(policy=SMTP)
    mime["From"] = "bench@bench.test"
    mime["Message-ID"] = "<abc123@bench.test>"
    mime.set_content("Message-ID: <not-this@body>\n")
    assert message_id_of(mime.as_bytes()) == "<abc123@bench.test>"


def test_a_message_without_a_message_id_has_an_empty_one():
    assert message_id_of(b"From: a@b.test\r\n\r\nMessage-ID: <in-the-body@x>\r\n") == ""


def test_the_phase_is_the_recipients_local_part_before_the_dash():
    assert phase_of("e2e-0000042@d3.bench.test") == "e2e"
    assert phase_of("raw4-0000001@bench.test") == "raw4"


def test_cpu_between_marks_counts_processes_that_started_or_ended_in_between():
    before = {"api": {10: 5.0, 11: 2.0}, "postgres": {20: 1.0}}
    # 11 ended after using 0.5 s more (its last value is kept); 12 started and used 0.25 s.
    after = {"api": {10: 6.0, 11: 2.5, 12: 0.25}, "postgres": {20: 1.0}}
    assert cpu_between(before, after) == {"api": 1.75, "postgres": 0.0}


def test_a_memory_peak_keeps_the_largest_process_and_the_largest_sum():
    peak = MemoryPeak()
    peak.add([100, 50])
    peak.add([80, 80, 10])
    peak.add([])
    assert (peak.largest_process, peak.largest_total, peak.processes) == (100, 170, 3)
