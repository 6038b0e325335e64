"""Health endpoints for load balancers and orchestrators.

``GET /healthz`` (liveness): the process answers HTTP. It touches nothing else, so a database or
broker outage never gets healthy web processes restarted in a loop.

``GET /readyz`` (readiness): this instance can do its work: Postgres answers, RabbitMQ accepts a
connection within ``MAILHUB_READY_BROKER_TIMEOUT_SECONDS``, and every migration the code knows
is applied. 200 when all hold, else 503; the JSON body names each check's result either way.
A web process accepts mail while RabbitMQ is down (the dispatcher publishes later), but an
instance that cannot reach the broker is reported not ready so that operators see it early.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from amqp.exceptions import AMQPError
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu.exceptions import KombuError

from deliveries import metrics
from mailhub import http_metrics
from mailhub.broker import broker_connection


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str
    seconds: float


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "reachable"


def check_broker() -> str:
    """Open (and close) one connection to ``CELERY_BROKER_URL``: to any of its nodes."""
    with broker_connection(timeout=settings.MAILHUB_READY_BROKER_TIMEOUT_SECONDS):
        pass
    return "reachable"


class MigrationsPending(Exception):
    pass


# Once every migration is applied in this process's eyes it stays so (the code does not change
# under a running process), so the plan, which reads every migration file, is computed until then.
_migrations_applied = False


def check_migrations() -> str:
    global _migrations_applied
    if _migrations_applied:
        return "applied"
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5])
        more = f" and {len(plan) - 5} more" if len(plan) > 5 else ""
        raise MigrationsPending(f"{len(plan)} unapplied: {names}{more}")
    _migrations_applied = True
    return "applied"


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "broker": check_broker,
    "migrations": check_migrations,
}

_EXPECTED_FAILURES = (DatabaseError, KombuError, AMQPError, OSError, MigrationsPending)


def readiness() -> dict[str, CheckResult]:
    results = {}
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            ok, detail = True, check()
        except _EXPECTED_FAILURES as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}".strip()
        results[name] = CheckResult(ok, detail, round(time.monotonic() - started, 3))
    return results


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    results = readiness()
    ready = all(result.ok for result in results.values())
    body = {
        "status": "ready" if ready else "not ready",
        "checks": {
            name: {"ok": r.ok, "detail": r.detail, "seconds": r.seconds}
            for name, r in results.items()
        },
    }
    return JsonResponse(body, status=200 if ready else 503)


class HealthCheckMiddleware:
    """Answers the probes and the metrics scrapers before any other middleware runs.

    Load balancers and orchestrators probe an instance by its IP address, a Host header that
    ALLOWED_HOSTS rightly refuses (400 from CommonMiddleware); the probes reveal nothing about
    the site, so they are answered whatever the Host. Prometheus scrapes by address too (every
    web instance found by service discovery, for /metrics/http); the metrics build nothing from
    the Host and want their bearer token instead. First in MIDDLEWARE.
    """

    VIEWS = {
        "/healthz": healthz,
        "/readyz": readyz,
        "/metrics": metrics.metrics_view,
        "/metrics/http": http_metrics.http_metrics_view,
    }

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        view = self.VIEWS.get(request.path_info)
        if view is not None:
            return view(request)
        return self.get_response(request)
