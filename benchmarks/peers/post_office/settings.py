"""Settings of the peer project: post_office's own where its README gives them, Django's and
Celery's defaults everywhere else. ``benchmarks.peer`` sets the environment:

- ``PEER_DATABASE_URL``: its scratch database, on the server Mailhub's run uses;
- ``PEER_SMTP_URL``: the benchmark's SMTP sink, ``smtp://127.0.0.1:PORT``;
- ``PEER_QUEUE_PREFIX``: put before its queue and exchange names on the shared RabbitMQ;
- ``PEER_LOCK_FILE``: the file lock post_office sends under (one sender per machine), per run;
- ``CELERY_BROKER_URL``: the broker, as Mailhub's.
"""

import os
from urllib.parse import urlsplit

import dj_database_url

SECRET_KEY = "benchmark-only-not-secret"  # noqa: S105 - signs nothing: no sessions, no users
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["post_office"]
# post_office renders subject and body as Django templates when it creates an Email.
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
# Connections kept like Mailhub's (mailhub/env.py); post_office closes its own after each batch.
DATABASES = {"default": dj_database_url.parse(os.environ["PEER_DATABASE_URL"], conn_max_age=60)}

_smtp = urlsplit(os.environ["PEER_SMTP_URL"])
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = _smtp.hostname or "127.0.0.1"
EMAIL_PORT = _smtp.port or 25
EMAIL_TIMEOUT = 30
DEFAULT_FROM_EMAIL = "bench@bench.test"

POST_OFFICE = {
    # "Integration with Celery": a send_queued_mail task right after every commit that queues.
    "CELERY_ENABLED": True,
    # The throughput settings issue 15 names: 20 SMTP connections (threads) in the sending
    # process, emails fetched 1,000 at a time.
    "THREADS_PER_PROCESS": 20,
    "BATCH_SIZE": 1000,
    # One Message-ID per Email, kept in its row like Mailhub's: the sink can then tell a message
    # sent twice from two messages. The FQDN spares a reverse DNS lookup of this host.
    "MESSAGE_ID_ENABLED": True,
    "MESSAGE_ID_FQDN": "bench.test",
    "LOCK_FILE_NAME": os.environ["PEER_LOCK_FILE"],
}

_prefix = os.environ["PEER_QUEUE_PREFIX"]
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
# Celery's defaults but for the names, which carry this run's prefix: its queue, its exchanges.
CELERY_TASK_DEFAULT_QUEUE = f"{_prefix}celery"
CELERY_TASK_DEFAULT_EXCHANGE = f"{_prefix}celery"
CELERY_TASK_DEFAULT_ROUTING_KEY = f"{_prefix}celery"
CELERY_CONTROL_EXCHANGE = f"{_prefix}celery"
CELERY_EVENT_EXCHANGE = f"{_prefix}celeryev"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The README's fallback for mail that a failed delivery requeued: every 10 minutes.
CELERY_BEAT_SCHEDULE = {
    "send-queued-mail": {"task": "post_office.tasks.send_queued_mail", "schedule": 600.0},
}
