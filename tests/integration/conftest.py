"""The real stack for integration tests: the test database in Postgres, the test queues in
RabbitMQ, an SMTP sink on loopback, and two Celery worker processes shaped like production's
(one for `mail.high`, one general that also runs beat, i.e. the dispatcher, and takes the webhook
ticks), started once per test module that asks for them."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings

from deliveries.models import Message
from deliveries.states import FINISHED_MESSAGE_STATUSES
from tests.support.dns_server import DnsServer
from tests.support.sink import SmtpSink
from tests.support.workers import ROOT, WorkerProcess, database_url, delete_queues

FINAL_MESSAGE_STATUSES = set(FINISHED_MESSAGE_STATUSES)

# Short enough that retries happen within a test, long enough to be real backoff.
WORKER_ENV = {
    "MAILHUB_RETRY_BASE_SECONDS": "0.5",
    "MAILHUB_RETRY_CAP_SECONDS": "2",
    "MAILHUB_DISPATCH_INTERVAL_SECONDS": "0.5",
    "MAILHUB_SMTP_TIMEOUT_SECONDS": "5",
    "MAILHUB_SMTP_DATA_TIMEOUT_SECONDS": "5",
    "MAILHUB_LEASE_SECONDS": "30",
}


def worker_log_dir() -> Path:
    """Where the workers of a test run write their logs."""
    log_dir = Path(os.environ.get("MAILHUB_TEST_LOG_DIR", ROOT / "var" / "test-logs"))
    log_dir.mkdir(parents=True, exist_ok=True)
    return log_dir


def worker_env(sink: SmtpSink, **overrides: str) -> dict[str, str]:
    """The environment of a test's workers: this run's database and queues, ``sink`` as relay."""
    return {
        **os.environ,
        **WORKER_ENV,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "MAILHUB_SMTP_URL": sink.url,
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }


@contextmanager
def one_worker(
    name: str, queues: list[str], **overrides: str
) -> Iterator[tuple[SmtpSink, WorkerProcess]]:
    """A sink and one worker (with beat) taking ``queues``, ``overrides`` in its environment,
    for a test module whose worker must differ from ``mail_stack``'s."""
    sink = SmtpSink().start()
    worker = WorkerProcess(
        name,
        queues,
        env=worker_env(sink, **overrides),
        log_dir=worker_log_dir(),
        concurrency=1,
        beat=True,
    )
    try:
        worker.start()
        yield sink, worker
    finally:
        worker.stop()
        sink.stop()
        delete_queues(settings.MAILHUB_QUEUE_PREFIX)


@pytest.fixture(scope="module")
def mail_stack(django_db_setup, django_db_blocker) -> Iterator[SmtpSink]:
    """Workers for one test module at a time: a module that needs other workers (other relays,
    other timeouts) starts its own without this stack's dispatcher taking its mail."""
    sink = SmtpSink().start()
    log_dir = worker_log_dir()
    env = worker_env(sink)
    queues = settings.MAILHUB_QUEUES
    workers = [
        WorkerProcess("high", [queues["high"]], env=env, log_dir=log_dir, concurrency=1),
        WorkerProcess(
            "general",
            [
                queues["high"],
                queues["normal"],
                queues["low"],
                settings.MAILHUB_DISPATCH_QUEUE,
                settings.MAILHUB_WEBHOOK_TICK_QUEUE,
            ],
            env=env,
            log_dir=log_dir,
            concurrency=2,
            beat=True,
        ),
    ]
    try:
        for worker in workers:
            worker.start()
        yield sink
    finally:
        for worker in workers:
            worker.stop()
        sink.stop()
        delete_queues(settings.MAILHUB_QUEUE_PREFIX)


@pytest.fixture(scope="session", autouse=True)
def _flush_survives_deadlocks() -> Iterator[None]:
    """Empty the tables between transactional tests with DELETE instead of TRUNCATE, and retry
    when Postgres picks the flush as a deadlock victim.

    Django's flush TRUNCATEs every table. A TRUNCATE makes new files for each table, index and
    partition, empty or not: with the day-partitioned history that is ~250 relations and ~0.9 s
    per test. The same tables locked as TRUNCATE locks them (ACCESS EXCLUSIVE, so no worker
    writes in between) and emptied with DELETE take ~15 ms; the foreign keys are checked at
    commit (Django makes them DEFERRABLE INITIALLY DEFERRED), so the order does not matter. A
    flush that must also reset sequences (RESTART IDENTITY) or CASCADE is run as Django wrote it.

    The workers keep running between tests (the dispatcher ticks every 0.5 s), so the flush can
    deadlock with a worker's transaction. Either side may be chosen as the victim; a worker
    recovers by itself, the flush is simply run again.
    """
    from django.db import OperationalError, transaction
    from django.db.backends.postgresql.operations import DatabaseOperations

    original = DatabaseOperations.execute_sql_flush

    def as_deletes(self, sql_list):
        tables = []
        for statement in sql_list:
            plain = statement.startswith("TRUNCATE ") and statement.rstrip().endswith('";')
            if not plain:  # RESTART IDENTITY, CASCADE, or anything else: Django's own way
                return None
            tables += [name.strip() for name in statement[len("TRUNCATE ") : -1].split(",")]
        return tables

    def delete_all(self, tables):
        with transaction.atomic(using=self.connection.alias), self.connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
            for table in tables:
                cursor.execute(f"DELETE FROM {table}")  # the names Django quoted

    def execute_sql_flush(self, sql_list):
        tables = as_deletes(self, sql_list)
        for attempt in range(5):
            try:
                if tables is None:
                    return original(self, sql_list)
                return delete_all(self, tables)
            except OperationalError as exc:
                if "deadlock detected" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.2)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "execute_sql_flush", execute_sql_flush)
        yield


@pytest.fixture
def sink(mail_stack: SmtpSink, transactional_db) -> SmtpSink:
    """The SMTP sink, emptied and unscripted; the test's rows are committed for the workers."""
    mail_stack.reset()
    return mail_stack


def wait_until(predicate: Callable[[], object], *, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


def wait_until_final(message_id, *, timeout: float = 20.0) -> Message:
    def final() -> bool:
        return Message.objects.get(id=message_id).status in FINAL_MESSAGE_STATUSES

    wait_until(final, timeout=timeout, what=f"message {message_id} to reach a final status")
    return Message.objects.get(id=message_id)


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsServer]:
    """A DNS server on loopback answering from a dict the test fills (sending domains' checks)."""
    server = DnsServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dns(dns_server: DnsServer, settings) -> DnsServer:
    """``dns_server``, emptied, and the one the domain checks of this process ask."""
    dns_server.clear()
    settings.MAILHUB_DNS_RESOLVERS = [dns_server.address]
    settings.MAILHUB_DNS_TIMEOUT_SECONDS = 5.0
    return dns_server
