"""rabbitmqctl for tests: what RabbitMQ itself says about queues, consumers and channels, and a
vhost of a test's own (for policies that must not touch anyone else's queues)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit

from django.conf import settings

from tests.support.processes import as_root


def rabbitmqctl(*arguments: str, timeout: float = 120) -> str:
    return subprocess.run(
        as_root(["rabbitmqctl", *arguments]),
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    ).stdout


def listed(what: str, *columns: str, vhost: str | None = None) -> list[dict]:
    """``rabbitmqctl list_<what> [-p VHOST] COLUMNS``, one dict per row."""
    scope = ["-p", vhost] if vhost is not None else []
    output = rabbitmqctl("-q", f"list_{what}", *scope, *columns, "--formatter", "json")
    return json.loads(output) if output.strip() else []


def broker_url(vhost: str) -> str:
    """The test broker's URL (settings.CELERY_BROKER_URL), on ``vhost``."""
    parts = urlsplit(settings.CELERY_BROKER_URL)
    return parts._replace(path="/" + quote(vhost, safe="")).geturl()


@contextmanager
def own_vhost(name: str) -> Iterator[str]:
    """A vhost that guest may use, deleted (with everything in it) afterwards."""
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)
