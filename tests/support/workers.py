"""Real Celery worker processes for integration tests, started the way production starts them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
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
        self.process: subprocess.Popen | None = None

    def start(self, *, ready_timeout: float = 60.0) -> WorkerProcess:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited at start:\n{self.log_tail()}")
            if b" ready." in self.log_path.read_bytes():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"worker {self.name} not ready in {ready_timeout} s:\n{self.log_tail()}")

    def stop(self, *, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM: finish the current task), then SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        # The embedded beat ignores SIGTERM under REMAP_SIGTERM and would outlive its worker,
        # ticking against the test database; nothing of the group may survive the stop.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once, as a crash or an OOM kill would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


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
