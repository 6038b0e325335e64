"""django-post-office 3.12 with its Celery integration: the peer of ./scripts/bench.

A Django project of its own, as a new user would set it up from post_office's README: the app
in INSTALLED_APPS, Django's SMTP backend, ``POST_OFFICE = {"CELERY_ENABLED": True, ...}`` with
its documented throughput settings, and a Celery app that autodiscovers
``post_office.tasks``. ``benchmarks.peer`` gives it a scratch database on the same Postgres
server, the benchmark's SMTP sink and queues of its own on the same RabbitMQ, all through the
environment that ``settings`` reads.
"""

# As in Celery's Django example: whatever imports the settings also makes this project's Celery
# app the current one, so that post_office's shared_task publishes through it (and to the
# queues of this run), not through a default app.
from benchmarks.peers.post_office.celery import app as celery_app

__all__ = ("celery_app",)
