"""Mailhub's log lines: plain text or one JSON object per line, each saying what it is about.

``MAILHUB_LOG_FORMAT`` picks the formatter in ``settings.LOGGING``. What a record is about lives
in a context variable: the Celery task id for the whole of a task (set by the signal receivers
in ``mailhub/celery.py``), the message and its client while the sending service handles that
message (``log_context``). ``ContextFilter``, on the one console handler, copies them onto every
record, so a line written anywhere below (the SMTP transport, the relay pool, Celery's own
lines) carries them without being handed anything, and without a query.

Periodic ticks are quiet when idle: ``QuietTicksFilter`` turns Celery's per-task lines about
them ("received", "succeeded", beat's "Sending due task") into DEBUG records, and the tick tasks
log what they did at INFO only when they did something (``tick_level``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import date, datetime, time
from types import MappingProxyType
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from mailhub.env import redact_url

#: The record attributes (and JSON fields) a record may carry, with their text-form labels.
FIELDS = {"task_id": "task", "message_id": "message", "client": "client"}
#: Those a message may already quote in full (Celery's "Task name[id] received"): long enough
#: that finding one in the message means it is there.
_QUOTED = {"task_id", "message_id"}

_context: ContextVar[Mapping[str, Any]] = ContextVar(
    "mailhub_log_context", default=MappingProxyType({})
)
_task_tokens: dict[str, Token[Mapping[str, Any]]] = {}


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Every record logged inside the block carries these fields (``FIELDS``), on top of the
    ones already set; None leaves a field as it was."""
    token = _context.set(
        {**_context.get(), **{key: value for key, value in fields.items() if value is not None}}
    )
    try:
        yield
    finally:
        _context.reset(token)


def task_started(task_id: str) -> None:
    """Records from now until ``task_finished`` carry this task id (Celery's ``task_prerun``)."""
    _task_tokens[task_id] = _context.set({**_context.get(), "task_id": task_id})


def task_finished(task_id: str) -> None:
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Puts the context's fields on the record (a field given as ``extra`` wins). Celery's own
    lines about a task outside it (the worker's "received", in the main process) name the task
    in ``record.data``: that id too."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        if not hasattr(record, "task_id"):
            data = getattr(record, "data", None)
            if isinstance(data, Mapping) and isinstance(data.get("id"), str):
                record.task_id = data["id"]
        return True


class QuietTicksFilter(logging.Filter):
    """On Celery's loggers (``celery.worker.strategy``, ``celery.app.trace``, ``celery.beat``):
    their INFO lines about the periodic tasks, a few a second when idle, become DEBUG records.

    The periodic tasks are those of ``CELERY_BEAT_SCHEDULE`` unless ``tasks`` names them.
    """

    def __init__(self, tasks: set[str] | None = None) -> None:
        super().__init__()
        self._tasks = frozenset(tasks) if tasks is not None else None

    def _ticks(self) -> frozenset[str]:
        if self._tasks is None:
            from django.conf import settings

            schedule: dict[str, dict[str, Any]] = settings.CELERY_BEAT_SCHEDULE
            self._tasks = frozenset(str(entry["task"]) for entry in schedule.values())
        return self._tasks

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        args = record.args
        if isinstance(args, Mapping):  # the worker's and the tracer's: a dict naming the task
            task = args.get("name")
        elif isinstance(args, tuple) and len(args) == 2:  # beat's: (entry name, task name)
            task = args[1]
        else:
            return True
        if task not in self._ticks():
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def tick_level(*counts: int) -> int:
    """The level of a periodic tick's report: INFO when it moved something, else DEBUG."""
    return logging.INFO if any(counts) else logging.DEBUG


# A URL wherever it stands in a line; ``redact_url`` hides the password of each.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it shown as ``***``."""
    if "://" not in text:
        return text
    return _URL.sub(lambda match: redact_url(match.group()), text)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger message [task=… message=… client=…]``: the fields the record
    carries, but an id the message already shows."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        about = [
            f"{label}={value}"
            for key, label in FIELDS.items()
            if (value := getattr(record, key, None)) is not None
            and not (key in _QUOTED and str(value) in record.message)
        ]
        return f"{line} [{' '.join(about)}]" if about else line

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _json_default(value: object) -> object:
    # Never python-json-logger's default for dataclasses (every field, passwords included):
    # an object is shown as its str(), which Mailhub's hide secrets in (env.SmtpRelay).
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def _redact_all(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: _redact_all(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_all(item) for item in value]
    return value


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    ``exc_info`` when there is one, the record's ``FIELDS`` and whatever ``extra`` it was given.
    Line breaks inside a message are escaped, so a record is always exactly one line."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
            json_default=_json_default,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = None  # placed first; the base class fills it in last
        super().add_fields(log_data, record, message_dict)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: _redact_all(value) for key, value in log_data.items()}
