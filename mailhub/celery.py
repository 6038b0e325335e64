"""The Celery application: configured from Django settings (``CELERY_`` namespace)."""

import logging
import os
from typing import cast

from celery import Celery, bootsteps
from celery.signals import after_setup_task_logger, task_postrun, task_prerun
from celery.worker.consumer import Consumer as CeleryConsumer

from mailhub import logs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailhub.settings")

app = Celery("mailhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_NATIVE_DELAYED_DELIVERY = "celery.worker.consumer.delayed_delivery:DelayedDelivery"


class Consumer(CeleryConsumer):
    """Celery's task consumer without native delayed delivery (CELERY_WORKER_CONSUMER).

    With quorum queues Celery would declare 28 delay exchanges and queues at every worker start
    and bind each task queue to them, for ETA tasks: Mailhub publishes none that wait long (what
    waits is in Postgres), and the machinery cannot route through Mailhub's direct exchange.
    """

    # Built with type(): the stubs know Consumer.Blueprint as an attribute, not a class.
    Blueprint = cast(
        "type[bootsteps.Blueprint]",
        type(
            "Blueprint",
            (CeleryConsumer.Blueprint,),
            {
                "default_steps": [
                    step
                    for step in CeleryConsumer.Blueprint.default_steps
                    if step != _NATIVE_DELAYED_DELIVERY
                ]
            },
        ),
    )


# Logging is Django's (settings.LOGGING), set up before Celery's: with
# CELERY_WORKER_HIJACK_ROOT_LOGGER off, Celery leaves the root logger's handler alone (its `-l`
# still sets the root level). These receivers tell mailhub.logs which task a record is about.
@task_prerun.connect
def _log_task_start(task_id: str, **_: object) -> None:
    logs.task_started(task_id)


@task_postrun.connect
def _log_task_end(task_id: str, **_: object) -> None:
    logs.task_finished(task_id)


@after_setup_task_logger.connect
def _task_loggers_use_the_root_handler(logger: logging.Logger, **_: object) -> None:
    # Celery gives its task loggers a handler and format of their own; they go through the one
    # handler (and MAILHUB_LOG_FORMAT) like every other logger instead.
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
