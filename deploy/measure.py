"""Measure this machine's capacity figures for the scaling guide (deploy/README.md).

    .venv/bin/python deploy/measure.py --messages 2000

A bounded run through the real stack, on loopback only: a scratch Postgres database (created,
migrated, dropped), RabbitMQ queues under a prefix of their own (deleted at the end), the API as
production runs it (gunicorn with deploy/gunicorn.conf.py), real Celery worker processes and an
aiosmtpd sink standing in for the relay. It measures, one phase at a time:

1. accept: POST /api/v1/messages (one recipient each) from --clients keep-alive connections,
   with no worker running, so that the API's cost is not mixed with delivery's;
2. deliver: one general worker process pool (--concurrency) started on the full queue, timed
   from its start until the sink has every message;
3. the Postgres rows and bytes each message left behind (table + indexes + TOAST), and the TCP
   connections each kind of process held to Postgres and to RabbitMQ.

Run it from the repository root; it needs the checkout's .venv and tests/ (the sink and the
process helpers). Figures are this machine's: every process shares its few cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.api_server import ApiServer, post_json  # noqa: E402
from tests.support.sink import SmtpSink  # noqa: E402
from tests.support.workers import WorkerProcess  # noqa: E402

ADMIN_URL = os.environ.get(
    "MEASURE_ADMIN_DATABASE_URL", "postgres://mailhub:mailhub@127.0.0.1:5432/postgres"
)
TABLES = [
    "deliveries_message",
    "deliveries_delivery",
    "deliveries_attempt",
    "deliveries_event",
]


def psql(url: str, sql: str) -> str:
    result = subprocess.run(  # noqa: S603
        ["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return result.stdout.strip()


def descendants(pid: int) -> list[int]:
    found, frontier = [pid], [pid]
    while frontier:
        children = subprocess.run(  # noqa: S603
            ["pgrep", "-P", str(frontier.pop())],  # noqa: S607
            capture_output=True,
            text=True,
        ).stdout.split()
        found += [int(child) for child in children]
        frontier += [int(child) for child in children]
    return found


def connections(pid: int) -> dict[str, int]:
    """TCP connections the process tree holds to Postgres (5432) and RabbitMQ (5672)."""
    pids = set(descendants(pid))
    output = subprocess.run(
        ["ss", "-Htnp", "state", "established"],  # noqa: S607
        capture_output=True,
        text=True,
    )
    counts = {"postgres": 0, "rabbitmq": 0}
    for line in output.stdout.splitlines():
        fields = line.split()
        if len(fields) < 4 or "pid=" not in line:
            continue
        peer_port = fields[3].rsplit(":", 1)[-1]
        owners = {int(part.split(",")[0]) for part in line.split("pid=")[1:]}
        if owners & pids:
            if peer_port == "5432":
                counts["postgres"] += 1
            elif peer_port == "5672":
                counts["rabbitmq"] += 1
    return counts


def cpu_seconds(pids) -> float:
    """User + system CPU time of the processes (and of their children that ended)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / ticks


def postgres_backends(database_url: str, database: str) -> list[int]:
    sql = f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}'"  # noqa: S608
    return [int(pid) for pid in psql(database_url, sql).split()]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def accept_phase(api: ApiServer, key: str, messages: int, clients: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(messages))

    def client() -> None:
        connection = api.connect()
        try:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                body = {
                    "from": "Shop <no-reply@shop.test>",
                    "to": [f"rcpt{index}@example.com"],
                    "subject": f"Your code is {index:06d}",
                    "text": f"Your verification code is {index:06d}. " * 8,
                    "priority": "normal",
                }
                started = time.perf_counter()
                status, answer = post_json(connection, "/api/v1/messages", body, key=key)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if status != 202:
                        errors.append(f"{status} {answer}")
        finally:
            connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, first: {errors[0]}")
    return {
        "requests": messages,
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests_per_second": round(messages / elapsed, 1),
        "latency_ms_p50": round(statistics.median(latencies) * 1000, 1),
        "latency_ms_p95": round(percentile(latencies, 0.95) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4, help="worker pool processes")
    parser.add_argument("--timeout", type=float, default=600, help="give up after (s)")
    args = parser.parse_args()
    if not 1 <= args.messages <= 50_000:
        raise SystemExit("--messages must be between 1 and 50000")

    database = f"mailhub_measure_{uuid.uuid4().hex[:8]}"
    database_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
    prefix = f"measure-{uuid.uuid4().hex[:8]}."
    log_dir = Path(tempfile.mkdtemp(prefix="mailhub-measure-"))
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd: a line per command
    sink = SmtpSink().start()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mailhub.settings",
        "DJANGO_SECRET_KEY": "measure-only",
        "DATABASE_URL": database_url,
        "MAILHUB_SMTP_URL": sink.url,
        "MAILHUB_QUEUE_PREFIX": prefix,
        "MAILHUB_API_RATE_LIMIT_PER_MINUTE": "10000000",
        "MAILHUB_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DJANGO_SECRET_KEY")})
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "MAILHUB_QUEUE_PREFIX")})
    psql(ADMIN_URL, f"CREATE DATABASE {database}")
    processes: list = []
    report: dict = {"messages": args.messages, "cpus": os.cpu_count()}
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=300,
        )
        import django

        django.setup()
        from accounts.services import api_key_create, client_get_or_create

        _, key = api_key_create(client=client_get_or_create(name="measure"))
        from django.db import connection

        connection.close()

        # The production sizing: 2 x CPUs + 1 workers, 4 threads each.
        api = ApiServer("measure", env=env, log_dir=log_dir, workers=None, threads=None)
        processes.append(api.start())
        api_cpu = cpu_seconds(descendants(api.pid))
        report["accept"] = accept_phase(api, key, args.messages, args.clients)
        api_backends = postgres_backends(database_url, database)
        report["accept"]["cpu_ms_per_request"] = {
            "api": round((cpu_seconds(descendants(api.pid)) - api_cpu) * 1000 / args.messages, 2),
            "postgres": round(cpu_seconds(api_backends) * 1000 / args.messages, 2),
        }
        report["connections"] = {"api": connections(api.pid)}

        queues = [f"{prefix}mail.high", f"{prefix}mail.normal", f"{prefix}mail.low"]
        worker = WorkerProcess(
            "measure",
            [*queues, f"{prefix}mailhub.dispatch"],
            env={**env, "MAILHUB_LOG_LEVEL": "WARNING"},
            log_dir=log_dir,
            concurrency=args.concurrency,
        )
        started = time.perf_counter()
        processes.append(worker.start())
        worker_cpu = cpu_seconds(descendants(worker.pid))
        sink.wait_for(args.messages, timeout=args.timeout)
        elapsed = time.perf_counter() - started
        time.sleep(2)  # the last deliveries' rows are committed after the sink's reply
        first, last = psql(
            database_url,
            "SELECT extract(epoch FROM min(started_at)), extract(epoch FROM max(started_at))"
            " FROM deliveries_attempt",
        ).split("|")
        worker_backends = set(postgres_backends(database_url, database)) - set(api_backends)
        report["deliver"] = {
            "worker_processes": args.concurrency,
            "seconds_including_worker_start": round(elapsed, 2),
            "mails_per_second_steady": round(
                (args.messages - 1) / max(float(last) - float(first), 1e-3), 1
            ),
            "cpu_ms_per_mail": {
                "worker": round(
                    (cpu_seconds(descendants(worker.pid)) - worker_cpu) * 1000 / args.messages,
                    2,
                ),
                "postgres": round(cpu_seconds(worker_backends) * 1000 / args.messages, 2),
            },
        }
        report["connections"]["worker"] = connections(worker.pid)
        sizes = {}
        for table in TABLES:
            rows, size = psql(
                database_url,
                f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}",  # noqa: S608
            ).split("|")
            sizes[table] = {
                "rows_per_message": round(int(rows) / args.messages, 2),
                "bytes_per_message": round(int(size) / args.messages),
            }
        report["postgres"] = sizes
        report["postgres"]["delivered"] = int(
            psql(database_url, "SELECT count(*) FROM deliveries_delivery WHERE status='delivered'")
        )
    finally:
        for process in reversed(processes):
            process.stop()
        sink.stop()
        psql(ADMIN_URL, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        _delete_queues(prefix)
    print(json.dumps(report, indent=2))


def _delete_queues(prefix: str) -> None:
    from django.conf import settings
    from kombu import Queue

    from mailhub.celery import app

    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in settings.CELERY_TASK_QUEUES:
            Queue(queue.name).bind(channel).delete()
    assert all(q.name.startswith(prefix) for q in settings.CELERY_TASK_QUEUES)


if __name__ == "__main__":
    main()
