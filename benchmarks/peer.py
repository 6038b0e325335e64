"""django-post-office beside Mailhub's stack, on the same machine and services: a scratch
database of its own on the same Postgres server, queues under its own prefix on the same
RabbitMQ, delivering into the same SMTP sink, with one Celery worker (its pool as large as
Mailhub's general pool) and Celery beat, as post_office's README runs it.

The project itself is ``benchmarks.peers.post_office``; this module starts, pauses, counts and
removes it. Like ``benchmarks.stack``, ``close()`` is safe at any point and removes everything
it made.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2

from benchmarks.enqueue import Enqueued
from benchmarks.procs import process_trees, stopped
from benchmarks.stack import (
    OBSERVER,
    Stack,
    create_database,
    drop_database,
    each_step,
    say,
)
from tests.support.processes import ROOT, ManagedProcess

SETTINGS = "benchmarks.peers.post_office.settings"
NAME = "django-post-office"
# post_office's Email.status values (post_office.models.STATUS), by name.
STATUS = {0: "sent", 1: "failed", 2: "queued", 3: "requeued"}


class PeerWorker(ManagedProcess):
    """``celery -A benchmarks.peers.post_office worker -B``: Celery's defaults but the queue."""

    kind = "worker"

    def __init__(self, *, queue: str, env: dict[str, str], log_dir: Path, concurrency: int) -> None:
        self.name = "post_office"
        self.log_path = log_dir / "worker-post_office.log"
        schedule = log_dir / f"beat-post_office-{uuid.uuid4().hex[:8]}.schedule"
        self.command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "benchmarks.peers.post_office",
            "worker",
            "-Q",
            queue,
            "-n",
            "post_office@%h",
            "-c",
            str(concurrency),
            "-l",
            "info",
            "-B",
            "-s",
            str(schedule),
        ]
        self.env = env

    def is_ready(self) -> bool:
        return b" ready." in self.log_path.read_bytes()


class PostOfficePeer:
    def __init__(self, stack: Stack, *, concurrency: int, log_dir: Path) -> None:
        self.stack = stack
        self.concurrency = concurrency
        self.log_dir = log_dir
        self.database = f"{stack.database}_post_office"
        parts = urlsplit(stack.database_url)
        self.database_url = parts._replace(path=f"/{self.database}").geturl()
        self.prefix = f"{stack.prefix}post_office."
        self.queue = f"{self.prefix}celery"
        self.worker: PeerWorker | None = None
        self._created_database = False
        self._closed = False

    @property
    def version(self) -> str:
        return version(NAME)

    def settings(self) -> dict:
        """post_office's settings as the peer runs them (for the report)."""
        env = self.environment()
        script = (
            "import json, django; django.setup(); from django.conf import settings; "
            "print(json.dumps({k: v for k, v in settings.POST_OFFICE.items() "
            "if k != 'LOCK_FILE_NAME'}))"
        )
        out = subprocess.run(  # noqa: S603 - this interpreter, fixed code
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout)

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "PEER_DATABASE_URL": self.database_url,
            "PEER_SMTP_URL": self.stack.sink.url,
            "PEER_QUEUE_PREFIX": self.prefix,
            # In the run's log directory: a lock left by a killed worker never stops a later run.
            "PEER_LOCK_FILE": str(self.log_dir / "post_office"),
            "PYTHONUNBUFFERED": "1",
        }

    def start(self) -> PostOfficePeer:
        say(f"{NAME} {self.version}: creating database {self.database}")
        create_database(self.stack.admin_url, self.database)
        self._created_database = True
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--verbosity", "0"],
            cwd=ROOT,
            env=self.environment(),
            check=True,
        )
        say(f"starting the {NAME} worker (concurrency {self.concurrency}, beat)")
        self.worker = PeerWorker(
            queue=self.queue,
            env=self.environment(),
            log_dir=self.log_dir,
            concurrency=self.concurrency,
        )
        self.worker.start()
        return self

    # -- what is running --------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        process = self.worker.process if self.worker else None
        return process.pid if process is not None and process.poll() is None else None

    def process_groups(self) -> dict[str, list[int]]:
        """The peer's processes by group, for ``benchmarks.procs.ProcessSampler``."""
        groups: dict[str, list[int]] = {}
        if (pid := self.pid) is not None:
            groups["peer worker"] = process_trees({"peer worker": pid})["peer worker"]
        if self._created_database:
            groups["postgres peer"] = self.stack.postgres_backends(self.database)
        return groups

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The worker (its pool and beat too) stopped with SIGSTOP until the block ends."""
        with stopped(self.process_groups().get("peer worker", [])):
            yield

    def enqueue(self, phase: str, count: int, *, domains: int) -> subprocess.Popen:
        """Start ``send_many`` of ``count`` messages in calls of 100 (``benchmarks.enqueue``);
        ``finish_enqueue`` reads its result."""
        return start_enqueue("post_office", self.environment(), phase, count, domains=domains)

    def statuses(self, phase: str | None = None) -> dict[str, int]:
        """How many of ``phase``'s emails (default: all) are in each post_office status."""
        connection = psycopg2.connect(
            self.database_url, connect_timeout=10, application_name=OBSERVER
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    'SELECT status, count(*) FROM post_office_email WHERE "to" LIKE %s'
                    " GROUP BY status",
                    [f"{phase}-%" if phase else "%"],
                )
                return {STATUS.get(status, str(status)): n for status, n in cursor.fetchall()}
        finally:
            connection.close()

    # -- stop -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the worker, delete the queues, drop the database; each step whatever the others
        did, and once."""
        if self._closed:
            return
        self._closed = True
        each_step(
            [
                ("stopping the post_office worker", self._stop_worker),
                ("deleting the post_office queues", self._delete_queues),
                ("dropping the post_office database", self._drop_database),
            ]
        )

    def _stop_worker(self) -> None:
        if self.worker is None or self.worker.process is None:
            return
        self.worker.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.worker.process.pid, signal.SIGKILL)

    def _delete_queues(self) -> None:
        if self.worker is None:
            return
        from kombu import Exchange, Queue

        from mailhub.celery import app

        exchanges = [
            self.queue,
            f"{self.prefix}celeryev",
            f"{self.prefix}celery.pidbox",
            f"reply.{self.prefix}celery.pidbox",
        ]
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            Queue(self.queue).bind(channel).delete()
            for name in exchanges:
                assert name.startswith(self.prefix) or name.startswith(f"reply.{self.prefix}")
                Exchange(name).bind(channel).delete()

    def _drop_database(self) -> None:
        if not self._created_database:
            return
        if self.stack.keep_database:
            say(f"the post_office database is kept: {self.database_url}")
            return
        drop_database(self.stack.admin_url, self.database)
        self._created_database = False


# -- the enqueueing process, for either system ----------------------------------------------


def start_enqueue(
    system: str, env: dict[str, str], phase: str, count: int, *, domains: int
) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
        [
            sys.executable,
            "-m",
            "benchmarks.enqueue",
            system,
            "--phase",
            phase,
            "--count",
            str(count),
            "--domains",
            str(domains),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def finish_enqueue(process: subprocess.Popen) -> Enqueued:
    """Wait for an enqueueing process; its result, or an error with its exit status."""
    out, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"enqueueing failed (exit status {process.returncode}); see above")
    return Enqueued.from_json(out.strip().splitlines()[-1])
