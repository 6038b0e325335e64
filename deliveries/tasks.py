"""Celery entry points: thin wrappers that pass ids to services."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import beat_init, task_prerun, worker_process_shutdown
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections

from deliveries.dispatcher import deliveries_dispatch
from deliveries.services import deliveries_send, history_partitions_ensure
from deliveries.smtp import RelayPool, SmtpTransport
from mailhub.logs import tick_level

logger = logging.getLogger(__name__)

_transport: RelayPool | None = None


def process_transport() -> RelayPool:
    """This worker process's transport; created after the fork, so no socket is shared."""
    global _transport
    if _transport is None:
        _transport = RelayPool(
            [
                SmtpTransport(
                    relay,
                    timeout=settings.MAILHUB_SMTP_TIMEOUT_SECONDS,
                    data_timeout=settings.MAILHUB_SMTP_DATA_TIMEOUT_SECONDS,
                    helo_name=settings.MAILHUB_SMTP_HELO_NAME,
                )
                for relay in settings.MAILHUB_SMTP_RELAYS
            ],
            cooldown=settings.MAILHUB_RELAY_COOLDOWN_SECONDS,
        )
    return _transport


@worker_process_shutdown.connect
def _close_transport(**_: object) -> None:
    if _transport is not None:
        _transport.close()


@task_prerun.connect
def _drop_broken_database_connections(**_: object) -> None:
    # Workers keep their database connection across tasks (CELERY_DB_REUSE_MAX); this closes it
    # when the last task left it broken (say Postgres restarted) so the next task reconnects.
    close_old_connections()


# Postgres briefly away (a restart, a failover): try again within seconds rather than leave the
# messages to the dispatcher's republish a minute later. Safe: a rerun claims only what is
# still `queued`, so nothing already sent is sent again by it.
@shared_task(
    bind=True,
    acks_late=True,
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=6,
)
def deliver_messages(self, message_ids: list[str]) -> None:
    deliveries_send(
        message_ids=message_ids,
        task_id=self.request.id or "",
        worker=self.request.hostname or "",
        transport=process_transport(),
    )


@shared_task(ignore_result=True)
def dispatch_due() -> None:
    report = deliveries_dispatch()
    logger.log(tick_level(report.touched, report.published_messages), "dispatcher: %s", report)


@shared_task(ignore_result=True)
def history_partitions() -> None:
    """Beat's partition tick (``retention.history_partitions_ensure``): hourly by default, and
    once when beat starts, so that a beat restarted more often than the interval still runs it."""
    report = history_partitions_ensure()
    if report.busy:
        logger.warning("history partitions: %s", report)
    elif report.created:
        logger.info("history partitions: %s", report)


@beat_init.connect
def _partitions_when_beat_starts(**_: object) -> None:
    history_partitions.apply_async(
        queue=settings.MAILHUB_DISPATCH_QUEUE,
        expires=settings.MAILHUB_HISTORY_PARTITIONS_INTERVAL_SECONDS,
    )
