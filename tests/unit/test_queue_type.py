"""MAILHUB_QUEUE_TYPE: how the task queues are declared, the worker's steps that go with it, and
the rule that makes quorum queues safe for Mailhub: no task waits in RabbitMQ for long."""

from __future__ import annotations

import ast
import os
import runpy
from typing import Any
from unittest import mock

import pytest
from celery.worker.consumer import Consumer as CeleryConsumer
from django.conf import settings

from mailhub.celery import _NATIVE_DELAYED_DELIVERY, Consumer, app
from tests.support.workers import ROOT

QUEUES = {"mail.high", "mail.normal", "mail.low", "mailhub.dispatch", "webhooks", "webhooks.tick"}
PACKAGES = ("accounts", "api", "deliveries", "mailhub", "webhooks")


def settings_with(**environment: str) -> dict[str, Any]:
    """mailhub/settings.py read again with these variables (and no queue prefix)."""
    patched = {name: value for name, value in os.environ.items() if name != "MAILHUB_QUEUE_TYPE"}
    with mock.patch.dict(os.environ, {**patched, "MAILHUB_QUEUE_PREFIX": "", **environment}):
        return runpy.run_path(str(ROOT / "mailhub" / "settings.py"))


def test_quorum_declares_every_task_queue_replicated_and_durable():
    queues = settings_with(MAILHUB_QUEUE_TYPE="quorum")["CELERY_TASK_QUEUES"]

    assert {queue.name for queue in queues} == QUEUES
    for queue in queues:
        assert queue.queue_arguments == {"x-queue-type": "quorum"}, queue.name
        assert queue.durable and not queue.auto_delete, queue.name


@pytest.mark.parametrize("environment", [{}, {"MAILHUB_QUEUE_TYPE": "classic"}])
def test_classic_queues_are_declared_without_arguments_as_before_the_setting(environment):
    # An argument a running broker's queue lacks would make Celery's declaration fail.
    queues = settings_with(**environment)["CELERY_TASK_QUEUES"]

    assert {queue.name for queue in queues} == QUEUES
    assert all(not queue.queue_arguments for queue in queues)


def test_the_worker_runs_celerys_consumer_without_native_delayed_delivery():
    assert settings.CELERY_WORKER_CONSUMER == "mailhub.celery:Consumer"
    # Celery still names the step so: were it renamed, leaving it out would silently stop.
    assert _NATIVE_DELAYED_DELIVERY in CeleryConsumer.Blueprint.default_steps
    assert Consumer.Blueprint.default_steps == [
        step for step in CeleryConsumer.Blueprint.default_steps if step != _NATIVE_DELAYED_DELIVERY
    ]
    assert settings.CELERY_WORKER_DETECT_QUORUM_QUEUES is True


def delayed_publishes() -> list[str]:
    """Every call in Mailhub's code that passes `eta` or `countdown`, or calls `.retry(`."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                keywords = {keyword.arg for keyword in node.keywords}
                is_retry = isinstance(node.func, ast.Attribute) and node.func.attr == "retry"
                if keywords & {"eta", "countdown"} or is_retry:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_task_waits_in_rabbitmq_but_the_short_retry_of_a_database_outage():
    """With quorum queues Celery cannot raise a worker's prefetch for a task whose ETA has not
    come: it holds one of the consumer's slots until then. Mailhub keeps what waits (retries,
    scheduled mail) in Postgres; the one delayed publish is the retry of a delivery task that
    met a database outage, a few seconds and 30 at most."""
    assert delayed_publishes() == []
    app.loader.import_default_modules()  # what a worker does at start: every tasks module
    retrying = {
        name: task
        for name, task in app.tasks.items()
        if name.split(".")[0] in PACKAGES and getattr(task, "autoretry_for", ())
    }
    assert set(retrying) == {"deliveries.tasks.deliver_messages"}
    for task in retrying.values():
        assert task.retry_backoff and task.retry_backoff_max <= 30
        assert task.max_retries <= 6
