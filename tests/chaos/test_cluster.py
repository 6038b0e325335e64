"""A three-node RabbitMQ cluster with quorum queues loses the node that leads the mail queues,
with mail in flight and clients posting."""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import pytest
from django.conf import settings
from django.utils import timezone

from deliveries.models import Delivery
from deliveries.states import ACTIVE, DeliveryStatus
from tests.builders import message_payload
from tests.chaos.cluster import RabbitCluster
from tests.chaos.stack import (
    BODY,
    PRIORITIES,
    Feeder,
    chaos_stack,
    refused_requests_left_no_trace,
    requests_summary,
    settle,
    sinks,
)
from tests.deploy.conftest import ENV_EXAMPLE, read_env_file
from tests.integration.conftest import wait_until, worker_log_dir
from tests.support.api_server import post_json

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

PRELOAD = 1500  # posted in batches before the fault
FED = 500  # posted one by one, at FEED_RATE a second, across the fault
FEED_RATE = 25
MAIL_QUEUES = [f"mail.{priority}" for priority in PRIORITIES]
CONCURRENCY = 2


@pytest.fixture
def cluster() -> Iterator[RabbitCluster]:
    """Started for the test, stopped and deleted afterwards whatever happened."""
    cluster = RabbitCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop(keep_logs_in=worker_log_dir())


def production_broker(cluster: RabbitCluster) -> str:
    """The example deployment's user, password and vhost (deploy/.env.example), on every node."""
    example = urlsplit(read_env_file(ENV_EXAMPLE)["CELERY_BROKER_URL"])
    return cluster.url(
        user=unquote(example.username or ""),
        password=unquote(example.password or ""),
        vhost=unquote(example.path.removeprefix("/")),
    )


def leaders(cluster: RabbitCluster) -> dict[str, str]:
    return {q["name"]: q["leader"] for q in cluster.queues("mailhub") if q["name"] in MAIL_QUEUES}


def longest_pause(client, since) -> str:
    """The longest wait between two deliveries becoming final, from ``since`` on, and when."""
    finished = sorted(
        Delivery.objects.filter(message__client=client, updated_at__gte=since)
        .exclude(status__in=[DeliveryStatus.QUEUED, DeliveryStatus.SENDING])
        .values_list("updated_at", flat=True)
    )
    gap, start = max(
        ((b - a).total_seconds(), (a - since).total_seconds())
        for a, b in itertools.pairwise([since, *finished])
    )
    return f"{gap:.1f} s, from {start:.1f} s after the kill"


def test_the_node_leading_the_mail_queues_dies_and_no_accepted_mail_is_lost(actor, cluster):
    """SIGKILL of the node that leads every mail queue and holds every client's connection:
    the other two elect new leaders, workers, beat and the API fail over to the next node of
    CELERY_BROKER_URL, tasks that were unacknowledged on the dead node are delivered again (the
    claim in Postgres makes a second run harmless), and a publish lost with the node is redone
    by the dispatcher. Every accepted message is delivered, the duplicates stay within the
    documented window."""
    with (
        sinks() as [sink],
        chaos_stack(
            "cluster",
            MAILHUB_SMTP_URL=sink.url,
            CELERY_BROKER_URL=production_broker(cluster),
            MAILHUB_QUEUE_TYPE="quorum",
            MAILHUB_REPUBLISH_AFTER_SECONDS="2",
            MAILHUB_LEASE_SECONDS="10",
        ) as stack,
    ):
        sink.delay_seconds = 0.02  # the preload is still being sent when the node dies
        stack.start_worker(name="a", concurrency=CONCURRENCY)
        stack.start_worker(name="b", concurrency=CONCURRENCY, beat=True)
        api = stack.start_api()
        preloaded = []
        connection = api.connect(timeout=120)
        for start in range(0, PRELOAD, 500):
            status, body = post_json(
                connection,
                "/api/v1/messages/batch",
                {
                    "messages": [
                        message_payload(
                            to=[f"cluster-b{n}@example.com"],
                            subject=f"cluster {n}",
                            text=BODY,
                            priority=PRIORITIES[n % 3],
                        )
                        for n in range(start, start + 500)
                    ]
                },
                key=actor.key,
            )
            assert status == 202, body
            preloaded += [uuid.UUID(result["id"]) for result in body["results"]]
        connection.close()
        feeder = Feeder(api, key=actor.key, tag="cluster", rate=FEED_RATE, limit=FED)
        feeder.start()
        try:
            sink.wait_for(PRELOAD // 4, timeout=300)
            before = leaders(cluster)
            # The node leading most mail queues: all three, the node they were declared on.
            [(victim, _)] = Counter(before.values()).most_common(1)
            waiting = Delivery.objects.filter(
                message__client=actor.client, status__in=ACTIVE
            ).count()
            posted = len(feeder.answers)
            killed_at = timezone.now()
            cluster.kill(cluster.node(victim))
            wait_until(
                lambda: victim not in leaders(cluster).values(),
                timeout=120,
                what="new leaders for the mail queues",
            )
            after = leaders(cluster)
            feeder.join(300)  # it stops by itself after FED requests
        finally:
            feeder.stop()
        elections = [cluster.elected("mailhub", queue, since=killed_at) for queue in MAIL_QUEUES]
        assert None not in elections, elections
        row = settle(
            fault="RabbitMQ node leading the queues killed, 3-node cluster",
            client=actor.client,
            sinks=[sink],
            fault_ended=killed_at,
            accepted_ids=[*preloaded, *feeder.accepted_ids()],
            notes=[
                requests_summary(feeder),
                f"mail queues' leaders {sorted(set(before.values()))} -> "
                f"{sorted(set(after.values()))}, the last elected "
                f"{max((e - killed_at).total_seconds() for e in elections):.2f} s after the kill",
                f"at the kill {waiting} deliveries were still to go and {FED - posted} POSTs to "
                "come: the time to recover is mostly theirs",
                f"longest pause between deliveries after the kill: "
                f"{longest_pause(actor.client, killed_at)}",
            ],
        )

    assert row.lost == 0, row.notes
    assert row.delivered == row.recipients
    assert feeder.refused() == [] and refused_requests_left_no_trace(feeder) == []
    assert row.message_id_changes == 0
    # A copy comes only from an attempt whose outcome was never recorded: the documented window,
    # at most a batch per worker process.
    assert row.duplicates <= row.unrecorded_attempts
    assert row.duplicates <= 2 * CONCURRENCY * settings.MAILHUB_TASK_BATCH_SIZE
