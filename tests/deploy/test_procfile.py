"""The Procfile's worker pools (what ./scripts/start runs) consume every queue Celery declares,
shaped like the deployments': a reserved `mail.high` pool, and webhook ticks on two pools."""

from __future__ import annotations

from tests.deploy.conftest import consumed_queues
from tests.support.workers import ROOT


def procfile_workers() -> dict[str, set[str]]:
    """The queues each `celery worker` line consumes, named as with an empty prefix."""
    workers = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, colon, command = line.partition(":")
        if line.startswith("#") or not colon or " worker " not in command:
            continue
        command = command.replace("${MAILHUB_QUEUE_PREFIX}", "")
        workers[name] = consumed_queues(command)
    return workers


def test_the_procfile_pools_consume_every_queue_and_keep_the_reserved_pool_reserved(queues):
    workers = procfile_workers()
    assert set(workers) == {"worker_high", "worker", "worker_webhooks"}
    assert set().union(*workers.values()) == set(queues)
    assert workers["worker_high"] == {"mail.high", "mailhub.dispatch"}
    # Beat's webhook ticks: on both, so that one runs even while every webhook process waits.
    assert workers["worker_webhooks"] == {"webhooks", "webhooks.tick"}
    assert "webhooks.tick" in workers["worker"]
