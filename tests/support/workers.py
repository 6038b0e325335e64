"""Real Celery worker processes for integration tests, started the way production starts them."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from tests.support.processes import ROOT, ManagedProcess

__all__ = ["ROOT", "WorkerProcess", "database_url", "delete_queues"]


class WorkerProcess(ManagedProcess):
    """``celery -A mailhub worker``: a worker, with the embedded beat when ``beat``."""

    kind = "worker"

    def __init__(
        self,
        name: str,
        queues: list[str],
        *,
        env: dict[str, str],
        log_dir: Path,
        concurrency: int = 1,
        beat: bool = False,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"worker-{name}.log"
        self.command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "mailhub",
            "worker",
            "-Q",
            ",".join(queues),
            "-n",
            # Two workers of one name on one broker would fight over their control queue; the
            # control exchange carries the run's queue prefix (settings), which keeps them apart.
            f"{name}@%h",
            "-c",
            str(concurrency),
            "-l",
            "info",
            "--without-gossip",
            "--without-mingle",
        ]
        if beat:
            # A fresh schedule file each start: one left by a killed beat may be half written.
            schedule = log_dir / f"beat-{name}-{uuid.uuid4().hex[:8]}.schedule"
            self.command += ["-B", "-s", str(schedule)]
        # Celery's pool processes ignore SIGTERM with this set, so that a TERM sent to the whole
        # process group (as stop() does) is a warm shutdown, not the death of a running task.
        self.env = {**env, "REMAP_SIGTERM": "SIGTERM"}

    def is_ready(self) -> bool:
        return b" ready." in self.log_path.read_bytes()


def delete_queues(prefix: str) -> None:
    """Delete the RabbitMQ queues a stack with this MAILHUB_QUEUE_PREFIX declared."""
    from django.conf import settings
    from kombu import Queue

    from mailhub.celery import app

    own = settings.MAILHUB_QUEUE_PREFIX
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in settings.CELERY_TASK_QUEUES:
            Queue(prefix + queue.name.removeprefix(own)).bind(channel).delete()


def database_url() -> str:
    """The URL of the test database pytest-django created, for worker processes to use."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
