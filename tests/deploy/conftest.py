"""Shared facts for the deployment checks: where deploy/ is and which queues Celery declares."""

from __future__ import annotations

import functools
import os
import runpy
import shlex
from collections.abc import Iterable
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from kombu import Queue

from tests.support.workers import ROOT

DEPLOY = ROOT / "deploy"
# The environment of every deployment in deploy/ (compose's .env, systemd's mailhub.env).
ENV_EXAMPLE = DEPLOY / ".env.example"


def read_env_file(path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


@functools.cache
def production_settings() -> dict[str, Any]:
    """mailhub/settings.py as a deployment runs it: read with deploy/.env.example's environment
    alone, none of this test run's (its queue prefix, its queue type)."""
    with mock.patch.dict(os.environ, read_env_file(ENV_EXAMPLE), clear=True):
        return runpy.run_path(str(ROOT / "mailhub" / "settings.py"))


def production_queues() -> dict[str, Queue]:
    """Celery's queues as a production deployment declares them: no prefix, its queue type."""
    return {queue.name: queue for queue in production_settings()["CELERY_TASK_QUEUES"]}


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
