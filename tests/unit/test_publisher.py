"""PublishCoalescer: the caller hands messages over and goes on; one thread publishes them."""

import threading
import time
import uuid

import pytest
from celery.utils.saferepr import saferepr

from deliveries.publisher import PublishCoalescer, _argsrepr, _route
from mailhub.celery import app


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list] = []
        self.threads: set[str] = set()
        self.done = threading.Event()

    def __call__(self, batch):
        self.batches.append(list(batch))
        self.threads.add(threading.current_thread().name)
        self.done.set()
        return len(batch)


def test_messages_added_together_are_published_in_one_batch_off_the_callers_thread():
    recorder = Recorder()
    coalescer = PublishCoalescer(recorder, linger=0.05)

    coalescer.add([("m1", "mail.high", 20)])
    coalescer.add([("m2", "mail.low", 20), ("m3", "mail.low", 20)])

    assert recorder.done.wait(5)
    time.sleep(0.1)
    assert recorder.batches == [
        [("m1", "mail.high", 20), ("m2", "mail.low", 20), ("m3", "mail.low", 20)]
    ]
    assert recorder.threads == {"mailhub-publisher"}


def test_a_full_task_goes_out_without_waiting_for_the_linger():
    recorder = Recorder()
    coalescer = PublishCoalescer(recorder, linger=30)

    coalescer.add([(f"m{i}", "mail.normal", 3) for i in range(3)])

    assert recorder.done.wait(5)  # long before the 30 s linger
    assert recorder.batches == [[(f"m{i}", "mail.normal", 3) for i in range(3)]]


def test_less_than_a_task_waits_for_the_linger():
    recorder = Recorder()
    coalescer = PublishCoalescer(recorder, linger=0.3)

    started = time.monotonic()
    coalescer.add([("m1", "mail.normal", 3), ("m2", "mail.normal", 3)])

    assert recorder.done.wait(5)
    assert time.monotonic() - started >= 0.3
    assert recorder.batches == [[("m1", "mail.normal", 3), ("m2", "mail.normal", 3)]]


def test_adding_does_not_wait_for_a_slow_publish():
    release = threading.Event()

    def slow(batch):
        release.wait(5)
        return len(batch)

    coalescer = PublishCoalescer(slow, linger=0)
    started = time.monotonic()
    coalescer.add([("m1", "mail.normal", 20)])
    coalescer.add([("m2", "mail.normal", 20)])
    elapsed = time.monotonic() - started
    release.set()

    assert elapsed < 1.0  # the broker's pace is not the caller's


def test_flush_publishes_what_is_left_in_the_callers_thread():
    recorder = Recorder()
    coalescer = PublishCoalescer(recorder, linger=10)  # the thread would wait a long time
    coalescer.add([("m1", "mail.normal", 20)])

    assert coalescer.flush() == 1
    assert recorder.batches == [[("m1", "mail.normal", 20)]]
    assert coalescer.flush() == 0


def test_closing_at_exit_waits_for_the_batch_the_thread_is_publishing_then_publishes_the_rest():
    publishing, published = threading.Event(), []

    def slow(batch):
        publishing.set()
        time.sleep(0.3)  # the broker's round trip, while the process is exiting
        published.extend(batch)
        return len(batch)

    coalescer = PublishCoalescer(slow, linger=0)
    coalescer.add([("m1", "mail.normal", 20)])
    assert publishing.wait(5)
    coalescer.add([("m2", "mail.normal", 20)])  # pending: the thread is busy with m1
    coalescer.close(timeout=5)

    assert [message_id for message_id, _, _ in published][:2] == ["m1", "m2"]


def test_closing_gives_up_on_a_stuck_publish_instead_of_hanging_the_exit():
    stuck = threading.Event()

    def never(batch):
        stuck.set()
        threading.Event().wait(2)
        return len(batch)

    coalescer = PublishCoalescer(never, linger=0)
    coalescer.add([("m1", "mail.normal", 20)])
    assert stuck.wait(5)
    started = time.monotonic()
    coalescer.close(timeout=0.2)

    assert time.monotonic() - started < 1.0


def test_the_route_is_taken_from_the_settings_when_the_messages_are_handed_over(settings):
    from deliveries.publisher import _route

    settings.MAILHUB_QUEUES = {"high": "elsewhere.high"}
    settings.MAILHUB_TASK_BATCH_SIZE = 1

    assert _route([("m1", "high")]) == [("m1", "elsewhere.high", 1)]


@pytest.mark.parametrize("size", [1, 20, 50, 100])
def test_the_task_arguments_shown_in_flower_are_what_celery_would_have_written(size):
    # The publisher writes the arguments' repr itself while it is short (Celery's saferepr is
    # slow); for a task of any size it is the same text.
    chunk = [str(uuid.uuid4()) for _ in range(size)]
    assert _argsrepr(chunk) == saferepr([chunk], app.amqp.argsrepr_maxsize)


def test_routing_resolves_each_priority_to_its_queue(settings):
    settings.MAILHUB_QUEUES = {"high": "q.high", "normal": "q.normal", "low": "q.low"}
    settings.MAILHUB_TASK_BATCH_SIZE = 7
    routed = _route([("a", "low"), ("b", "high"), ("c", "low"), ("d", "normal")])
    assert routed == [
        ("a", "q.low", 7),
        ("b", "q.high", 7),
        ("c", "q.low", 7),
        ("d", "q.normal", 7),
    ]
