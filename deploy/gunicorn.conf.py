"""Gunicorn configuration for Mailhub's web process (the REST API and the admin).

Used by the Procfile's `web` line: ``gunicorn mailhub.wsgi -c deploy/gunicorn.conf.py``.
Gunicorn reads this file before it imports Django, so it reads its few variables itself (and
must not import ``mailhub``, whose settings would then load in the master process).

    MAILHUB_BIND       host:port to listen on, comma-separated for several   127.0.0.1:8000
    GUNICORN_WORKERS   worker processes                 one per CPU, at least 2, at most 8
    GUNICORN_THREADS   threads per worker                                        8
    MAILHUB_LOG_LEVEL, MAILHUB_LOG_FORMAT   as for every Mailhub process           info, text
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"gunicorn.conf.py: {name} must be an integer, got {raw!r}") from None
    if value < 1:
        raise SystemExit(f"gunicorn.conf.py: {name} must be at least 1, got {value}")
    return value


# Set explicitly, always: without it gunicorn would listen on 0.0.0.0:$PORT, and honcho sets
# PORT for every process it starts.
bind = [
    address.strip()
    for address in os.environ.get("MAILHUB_BIND", "127.0.0.1:8000").split(",")
    if address.strip()
]

# One process per CPU, with threads: a request spends much of its time waiting on Postgres, and
# fewer, busier processes put more messages in each task the background publisher sends (the
# workers' cost is per task). Measured with `./scripts/bench` on 2 CPUs: 2 x 8 accepted 267
# single sends a second at 7.3 ms of CPU each (all processes), the classic 2 * CPUs + 1 = 5 x 4
# 159 at 12.3 ms. Each thread keeps its own Postgres connection (CONN_MAX_AGE): 8 x 8 = 64 at
# most, leaving room for the Celery pools under Postgres's default max_connections of 100.
workers = _positive_int("GUNICORN_WORKERS", min(max(os.cpu_count() or 1, 2), 8))
worker_class = "gthread"
threads = _positive_int("GUNICORN_THREADS", 8)

# An API request is a few queries and one publish (given up after about a second when RabbitMQ
# is down), so a worker silent for 30 s is stuck, not busy.
timeout = 30
# On SIGTERM, requests in flight get this long to finish before their worker is killed.
graceful_timeout = 20
keepalive = 5

# Django is imported once, in the master, and every worker is forked from it: a new or recycled
# worker starts in milliseconds instead of spending 0.6 to 0.75 s of CPU importing it (measured:
# with 2,000-request recycling, four of a benchmark's five workers restarted within three seconds
# and took that CPU from everything else). Nothing opens a connection or a thread at import.
preload_app = True


# GET /metrics/http (mailhub/http_metrics.py) adds up the request counts of every worker process
# of this server: prometheus-client keeps them in files in this directory, one set per process.
# The variable must be set before prometheus-client is first imported (it chooses its storage
# then), so here, before the application is loaded; the directory itself is made empty when the
# server starts (a previous server's counts would otherwise be added in) and removed when it stops.
# A directory per server (by the master's pid), so that servers side by side never mix theirs.
_METRICS_DIR = Path(tempfile.gettempdir()) / f"mailhub-web-metrics-{os.getpid()}"
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_METRICS_DIR)


def on_starting(server) -> None:
    shutil.rmtree(_METRICS_DIR, ignore_errors=True)
    _METRICS_DIR.mkdir(mode=0o700, parents=True)


def on_exit(server) -> None:
    shutil.rmtree(_METRICS_DIR, ignore_errors=True)


def pre_fork(server, worker) -> None:
    # Everything the master loaded (Django, the app) lives as long as the worker: frozen, the
    # garbage collector's full passes stop walking it (measured over a benchmark run: 0.34 ->
    # 0.07 to 0.13 s of CPU per worker in those passes).
    gc.freeze()


# Recycling workers bounds the damage of any slow leak (memory stays flat over a soak); the
# jitter keeps them from all restarting at the same moment.
max_requests = 20000
max_requests_jitter = 2000

# Everything to stdout/stderr: honcho, systemd or the container runtime collects it.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("MAILHUB_LOG_LEVEL", "info").lower()

# MAILHUB_LOG_FORMAT=json: gunicorn's own lines (the access log too) become JSON objects like
# every other line of the stack, through the same formatter. Named by its path, it is imported
# when gunicorn sets up logging, just before the master preloads the application anyway.
_log_format = os.environ.get("MAILHUB_LOG_FORMAT", "").strip().lower() or "text"
if _log_format not in {"text", "json"}:
    raise SystemExit(
        f"gunicorn.conf.py: MAILHUB_LOG_FORMAT must be one of text, json, got {_log_format!r}"
    )
if _log_format == "json":
    logconfig_dict = {
        "formatters": {"json": {"()": "mailhub.logs.JsonFormatter"}},
        "handlers": {
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            },
            "error": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
            "gunicorn.error": {
                "level": loglevel.upper(),
                "handlers": ["error"],
                "propagate": False,
            },
        },
        # Until the application's own configuration (settings.LOGGING) replaces it.
        "root": {"level": loglevel.upper(), "handlers": ["error"]},
    }

proc_name = "mailhub-web"
# Gunicorn >= 25.1 opens a control socket (for `gunicornc`), by default one per user in $HOME;
# keep it with this checkout so that two stacks on one machine do not fight over it.
control_socket = str(_ROOT / "var" / "gunicorn.ctl")
