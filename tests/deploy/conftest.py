"""Shared facts for the deployment checks: where deploy/ is and which queues Celery declares."""

from __future__ import annotations

import shlex
from collections.abc import Iterable

import pytest
from django.conf import settings
from kombu import Queue

from tests.support.workers import ROOT

DEPLOY = ROOT / "deploy"


def production_queues() -> dict[str, Queue]:
    """Celery's queues as a production deployment names them: without the test run's prefix."""
    prefix = settings.MAILHUB_QUEUE_PREFIX
    return {queue.name.removeprefix(prefix): queue for queue in settings.CELERY_TASK_QUEUES}


def without_prefix(name: str) -> str:
    return name.removeprefix(settings.MAILHUB_QUEUE_PREFIX)


def consumed_queues(command: Iterable[str] | str) -> set[str]:
    """The queues a `celery worker` command line consumes (its -Q option)."""
    words = shlex.split(command) if isinstance(command, str) else list(command)
    for index, word in enumerate(words):
        if word in ("-Q", "--queues"):
            return set(words[index + 1].split(","))
        if word.startswith("--queues="):
            return set(word.split("=", 1)[1].split(","))
    raise AssertionError(f"no -Q in {words}")


@pytest.fixture(scope="session")
def queues() -> dict[str, Queue]:
    return production_queues()
