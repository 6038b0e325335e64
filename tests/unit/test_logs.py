"""Log lines: text or one JSON object per line, each naming the task, message and client it is
about; no secret in either; Celery's per-tick lines lowered to DEBUG."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from django.conf import settings

from deliveries.dispatcher import DispatchReport
from mailhub import logs
from mailhub.env import parse_smtp_url

TASK = "5d0c7a8e-3f1b-4c36-9a51-0d3c1f6e2b7a"
MESSAGE = "8f14e45f-ceea-467f-a0e6-1b2c3d4e5f60"


class Captured:
    def __init__(self, formatter: logging.Formatter) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(formatter)
        self.handler.addFilter(logs.ContextFilter())
        self.logger = logging.getLogger(f"tests.logs.{id(self)}")
        self.logger.handlers = [self.handler]
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)

    @property
    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def json(self) -> list[dict]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def as_json() -> Captured:
    return Captured(logs.JsonFormatter())


@pytest.fixture
def as_text() -> Captured:
    return Captured(logs.TextFormatter())


@pytest.fixture
def in_a_task() -> Iterator[None]:
    logs.task_started(TASK)
    try:
        yield
    finally:
        logs.task_finished(TASK)


def test_a_json_record_about_a_message_carries_its_task_message_and_client(as_json, in_a_task):
    with logs.log_context(message_id=MESSAGE, client=7):
        as_json.logger.info("outcome: %d delivered", 2)

    [record] = as_json.json()
    assert record["message"] == "outcome: 2 delivered"
    assert (record["task_id"], record["message_id"], record["client"]) == (TASK, MESSAGE, 7)
    assert record["level"] == "INFO" and record["logger"] == as_json.logger.name
    assert record["time"].endswith("+00:00")


def test_every_json_record_is_one_line_of_valid_json_even_with_line_breaks_and_a_traceback(
    as_json,
):
    as_json.logger.warning("two\nlines\r\nand\u2028more")
    try:
        raise ValueError("broken\nvalue")
    except ValueError:
        as_json.logger.exception("failed")
    as_json.logger.info("%s", {"nested": ["é", b"\x00"]})

    assert len(as_json.lines) == 3
    warning, error, info = as_json.json()
    assert warning["message"] == "two\nlines\r\nand\u2028more"
    assert error["level"] == "ERROR" and "ValueError: broken" in error["exc_info"]
    assert "nested" in info["message"]


def test_the_context_ends_with_its_block_and_the_task_with_the_task(as_json):
    logs.task_started(TASK)
    with logs.log_context(message_id=MESSAGE, client=7):
        pass
    as_json.logger.info("after the message")
    logs.task_finished(TASK)
    as_json.logger.info("after the task")

    during, after = as_json.json()
    assert during["task_id"] == TASK and "message_id" not in during and "client" not in during
    assert not {"task_id", "message_id", "client"} & after.keys()


def test_a_field_given_as_extra_wins_over_the_context(as_json, in_a_task):
    as_json.logger.info("other task", extra={"task_id": "given"})
    assert as_json.json()[0]["task_id"] == "given"


def test_celerys_own_line_about_a_task_names_it_outside_the_task(as_json):
    context = {"id": TASK, "name": "deliveries.tasks.deliver_messages"}
    as_json.logger.info("Task %(name)s[%(id)s] received", context, extra={"data": context})
    assert as_json.json()[0]["task_id"] == TASK


def test_a_text_record_appends_what_it_is_about_compactly(as_text, in_a_task):
    with logs.log_context(message_id=MESSAGE, client=7):
        as_text.logger.info("outcome: 1 delivered")
    as_text.logger.info("no message here")

    about_message, about_task = as_text.lines
    assert about_message.endswith(
        f" INFO {as_text.logger.name} outcome: 1 delivered [task={TASK} message={MESSAGE} client=7]"
    )
    assert about_task.endswith(f"no message here [task={TASK}]")


def test_a_text_record_does_not_repeat_what_its_message_already_shows(as_text, in_a_task):
    as_text.logger.info("Task deliveries.tasks.deliver_messages[%s] succeeded", TASK)
    as_text.logger.info("outside any task or message")
    logs.task_finished(TASK)
    as_text.logger.info("outside any task or message")

    assert as_text.lines[0].endswith(f"[{TASK}] succeeded")
    assert as_text.lines[2].endswith("outside any task or message")


def test_a_short_client_id_is_named_even_when_its_digits_occur_in_the_message(as_text):
    with logs.log_context(client=1):
        as_text.logger.info("outcome: 1 delivered")
    assert as_text.lines[0].endswith("outcome: 1 delivered [client=1]")


def test_a_traceback_follows_the_line_and_its_fields(as_text, in_a_task):
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        as_text.logger.exception("failed")
    first, *rest = as_text.lines
    assert first.endswith(f"failed [task={TASK}]")
    assert rest[0] == "Traceback (most recent call last):"


@pytest.mark.parametrize("form", ["as_json", "as_text"])
def test_no_password_of_a_url_or_a_relay_reaches_a_log_line(form, request):
    captured = request.getfixturevalue(form)
    relay = parse_smtp_url("MAILHUB_SMTP_URL", "smtp://mailer:s3cret-pw@relay.example:587")
    captured.logger.warning("relay %s down", relay, extra={"relay": relay})
    captured.logger.warning(
        "lost amqp://mailhub:br0ker-pw@rabbit:5672/vhost, retrying",
        extra={"url": "postgres://mailhub:db-pw@db/mailhub", "urls": ["smtp://a:n3sted@b"]},
    )
    try:
        raise ConnectionError("cannot reach smtps://user:exc-pw@relay.example")
    except ConnectionError:
        captured.logger.exception("failed")

    output = captured.stream.getvalue()
    for secret in ("s3cret-pw", "br0ker-pw", "db-pw", "n3sted", "exc-pw"):
        assert secret not in output
    assert "amqp://mailhub:***@rabbit:5672/vhost" in output
    assert "smtp://mailer@relay.example:587" in output


def test_a_url_without_a_password_is_left_as_it_is():
    line = "see https://example.com/path?q=a@b and smtp://relay:25"
    assert logs.redact(line) == line


# -- the periodic ticks ---------------------------------------------------------------------------

TICK = "webhooks.tasks.tick"


def celery_record(logger: str, msg: str, args, level: int = logging.INFO) -> logging.LogRecord:
    return logging.getLogger(logger).makeRecord(logger, level, __file__, 1, msg, args, None)


@pytest.fixture
def quiet() -> logs.QuietTicksFilter:
    return logs.QuietTicksFilter(tasks={TICK})


@pytest.mark.parametrize(
    ("logger", "msg", "args"),
    [
        ("celery.worker.strategy", "Task %(name)s[%(id)s] received", ({"name": TICK, "id": "1"},)),
        ("celery.app.trace", "Task %(name)s[%(id)s] succeeded", ({"name": TICK, "id": "1"},)),
        ("celery.beat", "Scheduler: Sending due task %s (%s)", ("webhooks-tick", TICK)),
    ],
)
def test_celerys_info_lines_about_a_tick_become_debug_records(quiet, logger, msg, args):
    record = celery_record(logger, msg, args)
    celery_logger = logging.getLogger(logger)
    level = celery_logger.level
    try:
        celery_logger.setLevel(logging.INFO)
        assert quiet.filter(record) is False
        assert record.levelname == "DEBUG"
        celery_logger.setLevel(logging.DEBUG)
        assert quiet.filter(celery_record(logger, msg, args)) is True
    finally:
        celery_logger.setLevel(level)


def test_lines_about_other_tasks_and_warnings_about_ticks_stay_as_they_are(quiet):
    other = celery_record(
        "celery.app.trace", "Task %(name)s[%(id)s] succeeded", ({"name": "x.deliver", "id": "1"},)
    )
    failed = celery_record(
        "celery.app.trace", "Task %(name)s failed", ({"name": TICK},), level=logging.ERROR
    )
    assert quiet.filter(other) is True and other.levelname == "INFO"
    assert quiet.filter(failed) is True and failed.levelname == "ERROR"


def test_the_ticks_are_the_tasks_of_the_beat_schedule():
    ticks = logs.QuietTicksFilter()._ticks()
    assert ticks == {
        "deliveries.tasks.dispatch_due",
        "webhooks.tasks.tick",
        "domains.tasks.reverify_due",
        "deliveries.tasks.history_partitions",
    }
    assert ticks == {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}


def test_the_dispatchers_report_reads_as_one_line():
    report = DispatchReport(released=2, recovered=1, published_messages=3)
    assert str(report) == (
        "released 2, republished 0, recovered 1, expired 0; published 3 message(s)"
    )
    assert str(DispatchReport(skipped=True)) == "skipped: another dispatcher is running"


def test_a_tick_reports_at_info_only_when_it_moved_something():
    assert logs.tick_level(0, 0, 0) == logging.DEBUG
    assert logs.tick_level(0, 3) == logging.INFO


def test_the_configured_handler_uses_the_chosen_format_and_names_the_context():
    console = settings.LOGGING["handlers"]["console"]
    assert console["formatter"] == settings.MAILHUB_LOG_FORMAT in settings.LOGGING["formatters"]
    assert console["filters"] == ["context"]
