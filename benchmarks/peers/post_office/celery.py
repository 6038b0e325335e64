"""The peer's Celery app, as post_office's README and Celery's Django guide set one up."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.peers.post_office.settings")

app = Celery("post_office_peer")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
