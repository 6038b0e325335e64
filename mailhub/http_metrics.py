"""What the web process answers: requests, their status class and latency, per route, served
in the Prometheus text format at ``GET /metrics/http``.

Unlike ``/metrics`` (``deliveries/metrics.py``), whose numbers are read from Postgres and are the
same whichever process serves them, these are counted where they happen, inside each gunicorn
worker process. ``deploy/gunicorn.conf.py`` points ``PROMETHEUS_MULTIPROC_DIR`` at a directory of
its own, so that prometheus-client writes every worker's counts to files there and a scrape adds
up all the workers of the instance (a dead or recycled worker's counts stay in the sum: counters
never go back). Without that variable (``manage.py runserver``, the test client) the counts are
the one process's. Each web instance reports its own requests: Prometheus scrapes every one
(``deploy/prometheus/prometheus.yml``, job ``mailhub-http``) and ``sum`` adds them up.

The labels are bounded whatever clients send: a route is the URL pattern's name (never the raw
path: ``/api/v1/messages/<uuid>`` is one route), a request no pattern matched is ``unresolved``,
a method outside the standard ones is ``other``, a status is its class (``2xx``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

from mailhub.metrics_token import bearer_token_matches

#: The classic text format every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Django's own methods; anything else a client invents is counted as ``other``.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
#: The route of a request that no URL pattern matched (404s, requests a middleware answered first).
UNRESOLVED = "unresolved"

#: Seconds, from a cached read (a few ms) to gunicorn's 30 s worker timeout.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: This process's metrics. In multiprocess mode the values live in files and a scrape reads them
#: all through ``MultiProcessCollector``; this registry is then never read.
REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "mailhub_http_requests",
    "HTTP requests answered, by route (the URL pattern's name), method and status class.",
    ["route", "method", "status_class"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "mailhub_http_request_duration_seconds",
    "Time from the request reaching Django's middleware to its response, by route and method.",
    ["route", "method"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)


def route_of(request: HttpRequest) -> str:
    """The name of the URL pattern that answered, or its pattern if it has no name."""
    match = request.resolver_match
    if match is None:
        return UNRESOLVED
    # view_name is "namespace:name", or the view's dotted path when the pattern has no name:
    # either way one value per pattern in the URLconf, never a part of the requested path.
    return match.view_name or match.route or UNRESOLVED


def method_of(request: HttpRequest) -> str:
    method = (request.method or "").upper()
    return method if method in METHODS else "other"


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


class HttpMetricsMiddleware:
    """Counts and times every request that reaches it. The probes and the scrapes do not: the
    middleware outside it (``deliveries.health.HealthCheckMiddleware``) answers /healthz, /readyz,
    /metrics and /metrics/http first, whatever the Host."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        # Django turns a view's exception into a response inside the chain, so one comes back.
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        route, method = route_of(request), method_of(request)
        REQUESTS.labels(route, method, status_class(response.status_code)).inc()
        DURATION.labels(route, method).observe(elapsed)
        return response


def http_metrics_render() -> bytes:
    """The text of every worker process of this instance (multiprocess mode), or this one's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def metrics_refusal(request: HttpRequest) -> HttpResponse | None:
    """The 401 for a metrics request without ``Bearer <MAILHUB_METRICS_TOKEN>`` (when a token is
    set), or None: checked before anything is read, so a refused request costs nothing."""
    token = settings.MAILHUB_METRICS_TOKEN
    if not token or bearer_token_matches(request.headers.get("Authorization", ""), token):
        return None
    response = HttpResponse("a bearer token is required\n", status=401)
    response["WWW-Authenticate"] = 'Bearer realm="mailhub-metrics"'
    return response


@require_GET
def http_metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics/http``; with MAILHUB_METRICS_TOKEN set, only for its bearer (as /metrics)."""
    return metrics_refusal(request) or HttpResponse(
        http_metrics_render(), content_type=CONTENT_TYPE
    )
