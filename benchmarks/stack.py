"""The stack under test, on loopback and all of its own: a scratch database, queues under a
random prefix, the sink, Celery workers shaped like production's and the API under gunicorn.

Everything started here is stopped by ``close()``, which also drops the database and deletes
the queues; it is safe to call at any point, also after a failed start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import psycopg2
from psycopg2 import sql

from benchmarks.load import DOMAIN
from benchmarks.sink import SinkProcess
from tests.support.api_server import ApiServer
from tests.support.workers import WorkerProcess

DEFAULT_DATABASE_URL = "postgres://mailhub:mailhub@127.0.0.1:5432/mailhub"
#: The benchmark process's own Postgres sessions (its waits, its sampler's queries) carry this
#: name, so that the CPU they cost is not counted as the stack's.
OBSERVER = "mailhub-bench-observer"


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Sizing:
    """Process counts. The defaults are the Procfile's pools, the webhook pool at 1 (it only
    runs the fan-out tick here: no endpoints), and gunicorn's own production sizing."""

    high: int = 2
    general: int = 4
    webhooks: int = 1
    api_workers: int | None = None  # None: deploy/gunicorn.conf.py's (one per CPU, 2 to 8)
    api_threads: int | None = None  # None: its (8)


class Stack:
    def __init__(self, *, database_url: str, sizing: Sizing, log_dir: Path) -> None:
        token = uuid.uuid4().hex[:8]
        self.database = f"mailhub_bench_{token}"
        parts = urlsplit(database_url)
        self.database_url = parts._replace(path=f"/{self.database}").geturl()
        self.admin_url = parts._replace(path="/postgres").geturl()
        self.prefix = f"bench-{token}."
        self.sizing = sizing
        self.log_dir = log_dir
        self.sink = SinkProcess()
        self.workers: dict[str, WorkerProcess] = {}
        self.api: ApiServer | None = None
        self._created_database = False
        self._django_ready = False
        self._queues_declared = False
        self.keep_database = False

    # -- start ------------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "mailhub.settings",
            "DJANGO_SECRET_KEY": "benchmark-only-not-secret",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": self.database_url,
            "MAILHUB_SMTP_URL": self.sink.url,
            "MAILHUB_QUEUE_PREFIX": self.prefix,
            # The benchmark's one key sends far more than a client's default 1,200 a minute;
            # the throttle still runs (and costs what it costs), it just never refuses.
            "MAILHUB_API_RATE_LIMIT_PER_MINUTE": "100000000",
            # Benchmark-only: the sending domain's DKIM key is stored encrypted under it.
            "MAILHUB_DKIM_ENCRYPTION_KEYS": "YmVuY2htYXJrLW9ubHktbm90LXNlY3JldC1rZXkhISE=",
            "PYTHONUNBUFFERED": "1",
        }

    def start(self) -> Stack:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # First, before this process touches Django or a database: the sink is a spawned child.
        self.sink.start()
        say(f"SMTP sink on {self.sink.url}")
        self.start_database()
        env = self.environment()
        self._queues_declared = True
        queues = [f"{self.prefix}mail.{name}" for name in ("high", "normal", "low")]
        dispatch = f"{self.prefix}mailhub.dispatch"
        ticks = f"{self.prefix}webhooks.tick"
        pools = {
            # The Procfile's pools: one reserved for mail.high, one general with beat.
            "high": ([queues[0], dispatch], self.sizing.high, False),
            "general": ([*queues, dispatch, ticks], self.sizing.general, True),
            "webhooks": ([f"{self.prefix}webhooks", ticks], self.sizing.webhooks, False),
        }
        for name, (pool_queues, concurrency, beat) in pools.items():
            say(f"starting the {name} worker (concurrency {concurrency})")
            worker = WorkerProcess(
                name, pool_queues, env=env, log_dir=self.log_dir, concurrency=concurrency, beat=beat
            )
            self.workers[name] = worker
            worker.start()
        self.api = ApiServer(
            "bench",
            env=env,
            log_dir=self.log_dir,
            workers=self.sizing.api_workers,
            threads=self.sizing.api_threads,
        )
        say("starting the API (gunicorn, deploy/gunicorn.conf.py)")
        self.api.start()
        return self

    def start_database(self) -> Stack:
        """The database alone, migrated, and Django in this process set up to use it."""
        say(f"creating database {self.database}")
        self._create_database()
        self._setup_django(self.environment())
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)
        return self

    def _create_database(self) -> None:
        create_database(self.admin_url, self.database)
        self._created_database = True

    def _setup_django(self, env: dict[str, str]) -> None:
        # This process reads the same database and names the same queues as the stack.
        names: tuple[str, ...] = ("DJANGO_SETTINGS_MODULE", "DJANGO_SECRET_KEY", "DATABASE_URL")
        names += ("MAILHUB_SMTP_URL", "MAILHUB_QUEUE_PREFIX", "MAILHUB_DKIM_ENCRYPTION_KEYS")
        os.environ.update({name: env[name] for name in names})
        import django
        from django.conf import settings

        django.setup()
        options = settings.DATABASES["default"].setdefault("OPTIONS", {})
        options["application_name"] = OBSERVER
        self._django_ready = True

    def api_key(self) -> str:
        """A new key of the client "bench", whose sending domain (load.DOMAIN) is verified locally:
        the accept runs its From-domain check as in production, and passes it."""
        from accounts.services import api_key_create, client_get_or_create
        from domains.services import domain_create, domain_mark_verified_locally

        client = client_get_or_create(name="bench")
        if not client.sending_domains.filter(domain=DOMAIN, verified_locally=True).exists():
            domain = domain_create(client=client, domain=DOMAIN)
            domain_mark_verified_locally(domain_id=domain.id)
            self._set_dkim_signing(on=False)
        _, secret = api_key_create(client=client)
        return secret

    @contextlib.contextmanager
    def dkim_signed(self):
        """The bench domain's mail DKIM-signed (its rsa-sha256 key active) while the block runs.
        Outside it the key is retired: django-post-office signs nothing, so the comparison and
        the other phases send the same unsigned mail, and one phase measures what signing
        costs."""
        self._set_dkim_signing(on=True)
        try:
            yield
        finally:
            self._set_dkim_signing(on=False)

    def _set_dkim_signing(self, *, on: bool) -> None:
        from domains.models import DkimKey

        DkimKey.objects.filter(domain__domain=DOMAIN, domain__client__name="bench").update(
            state=DkimKey.State.ACTIVE if on else DkimKey.State.RETIRED
        )

    # -- what is running --------------------------------------------------------------------

    def process_groups(self) -> dict[str, int | None]:
        """Root pid of each group of processes this stack runs (None: not running)."""

        def pid(process) -> int | None:
            running = process is not None and process.process is not None
            return process.process.pid if running and process.process.poll() is None else None

        groups = {f"worker {name}": pid(worker) for name, worker in self.workers.items()}
        groups["api"] = pid(self.api)
        groups["sink"] = self.sink.pid if self.sink.process.is_alive() else None
        return groups

    def postgres_backends(self, database: str | None = None) -> list[int]:
        """The server processes serving ``database`` (default: the stack's), but the
        benchmark's own."""
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s"
                " AND application_name IS DISTINCT FROM %s",
                [database or self.database, OBSERVER],
            )
            return [pid for (pid,) in cursor.fetchall()]

    # -- stop -------------------------------------------------------------------------------

    def stop_processes(self) -> None:
        started = [self.api, *reversed(list(self.workers.values()))]
        for process in started:
            if process is None or process.process is None:
                continue
            process.stop()
            # Celery's embedded beat ignores the SIGTERM of a warm stop (REMAP_SIGTERM) and
            # outlives its worker; whatever is left in the process group goes now.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.process.pid, signal.SIGKILL)

    def close(self) -> None:
        """Stop everything, delete the queues, drop the database; each step whatever the
        others did."""
        each_step(
            [
                ("stopping the API and the workers", self.stop_processes),
                ("stopping the sink", self.sink.stop),
                ("deleting the queues", self._delete_queues),
                ("dropping the database", self._drop_database),
            ]
        )

    def _delete_queues(self) -> None:
        if not (self._django_ready and self._queues_declared):
            return
        import amqp
        from django.conf import settings
        from kombu import Exchange

        from mailhub.celery import app

        names = [queue.name for queue in settings.CELERY_TASK_QUEUES]
        exchanges = [
            settings.CELERY_TASK_DEFAULT_EXCHANGE,
            settings.CELERY_EVENT_EXCHANGE,
            f"{settings.CELERY_CONTROL_EXCHANGE}.pidbox",
            f"reply.{settings.CELERY_CONTROL_EXCHANGE}.pidbox",
        ]
        # Never delete anything that is not this run's.
        assert all(name.startswith(self.prefix) for name in names)
        assert all(self.prefix in name for name in exchanges)
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            for name in names:
                # py-amqp's (kombu types it as the transport-neutral StdChannel)
                cast(amqp.Channel, channel).queue_delete(name)
            for name in exchanges:
                Exchange(name).bind(channel).delete()

    def _drop_database(self) -> None:
        if not self._created_database:
            return
        if self.keep_database:
            say(f"the database is kept: DATABASE_URL={self.database_url}")
            return
        if self._django_ready:
            from django.db import connections

            connections.close_all()
        drop_database(self.admin_url, self.database)
        self._created_database = False


def each_step(steps: list[tuple[str, Callable[[], None]]]) -> None:
    """Run every clean-up step whatever the ones before did; say which failed and why."""
    for what, step in steps:
        try:
            step()
        except Exception as exc:  # clean up the rest whatever happened
            say(f"{what} failed: {exc}")


def admin_execute(admin_url: str, statement: sql.Composable) -> None:
    """Run one statement on the server's `postgres` database, outside any transaction
    (CREATE and DROP DATABASE refuse to run inside one)."""
    connection = psycopg2.connect(admin_url, connect_timeout=10)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def create_database(admin_url: str, name: str) -> None:
    admin_execute(admin_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(admin_url: str, name: str) -> None:
    admin_execute(
        admin_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )
