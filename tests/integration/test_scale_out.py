"""Scale-out on one machine: two API processes and two worker pools standing in for two nodes,
against one RabbitMQ and one Postgres, share the load and deliver every message exactly once.

The stack here is this module's own: gunicorn with deploy/gunicorn.conf.py twice, on two
loopback ports, and two general worker pools with different node names (one also running beat,
as exactly one node does in production). Its queues carry a prefix of their own, so the
session's `mail_stack` workers, which share the test database, never take its tasks.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from deliveries.models import Attempt, Delivery, Message
from deliveries.states import DeliveryStatus, MessageStatus
from tests.builders import make_actor, message_payload
from tests.integration.conftest import wait_until
from tests.support.api_server import ApiServer, post_json
from tests.support.sink import SmtpSink
from tests.support.workers import ROOT, WorkerProcess, database_url, delete_queues

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

MESSAGES = 300
NODES = ("node1", "node2")


@dataclass
class ScaleOutStack:
    sink: SmtpSink
    apis: list[ApiServer]
    workers: list[WorkerProcess]


@pytest.fixture(scope="module")
def scale_out(django_db_setup, django_db_blocker) -> Iterator[ScaleOutStack]:
    prefix = f"scale-{uuid.uuid4().hex[:8]}."
    log_dir = Path(os.environ.get("MAILHUB_TEST_LOG_DIR", ROOT / "var" / "test-logs"))
    log_dir.mkdir(parents=True, exist_ok=True)
    sink = SmtpSink().start()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "MAILHUB_SMTP_URL": sink.url,
        "MAILHUB_QUEUE_PREFIX": prefix,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "MAILHUB_DISPATCH_INTERVAL_SECONDS": "1",
        "MAILHUB_SMTP_TIMEOUT_SECONDS": "10",
        "MAILHUB_SMTP_DATA_TIMEOUT_SECONDS": "10",
        "PYTHONUNBUFFERED": "1",
    }
    queues = [f"{prefix}mail.high", f"{prefix}mail.normal", f"{prefix}mail.low"]
    workers = [
        WorkerProcess(
            f"scale-{node}",
            [*queues, f"{prefix}mailhub.dispatch"],
            env=env,
            log_dir=log_dir,
            concurrency=2,
            beat=node == NODES[0],
        )
        for node in NODES
    ]
    apis = [ApiServer(f"scale-{node}", env=env, log_dir=log_dir) for node in NODES]
    try:
        for process in [*workers, *apis]:
            process.start()
        yield ScaleOutStack(sink=sink, apis=apis, workers=workers)
    finally:
        for process in [*apis, *workers]:
            process.stop()
        sink.stop()
        delete_queues(prefix)


def _post_through(api: ApiServer, key: str, indexes: list[int]) -> list[uuid.UUID]:
    ids = []
    connection = api.connect()
    try:
        for index in indexes:
            status, body = post_json(
                connection,
                "/api/v1/messages",
                message_payload(
                    to=[f"rcpt{index}@example.com"],
                    subject=f"scale-out {index}",
                    priority=("high", "normal", "low")[index % 3],
                ),
                key=key,
            )
            assert status == 202, body
            ids.append(uuid.UUID(body["id"]))
    finally:
        connection.close()
    return ids


def test_two_apis_and_two_worker_pools_share_the_load_and_deliver_each_message_once(
    scale_out, transactional_db
):
    actor = make_actor("scale-out")
    api_one, api_two = scale_out.apis
    # Messages alternate between the two APIs, posted concurrently, as a load balancer would.
    with ThreadPoolExecutor(max_workers=2) as pool:
        via_one = pool.submit(_post_through, api_one, actor.key, list(range(0, MESSAGES, 2)))
        via_two = pool.submit(_post_through, api_two, actor.key, list(range(1, MESSAGES, 2)))
        message_ids = via_one.result() + via_two.result()

    scale_out.sink.wait_for(MESSAGES, timeout=180)

    def all_final() -> bool:
        return (
            Message.objects.filter(id__in=message_ids, status=MessageStatus.DELIVERED).count()
            == MESSAGES
        )

    wait_until(all_final, timeout=60, what=f"{MESSAGES} messages to be delivered")
    # Three dispatcher ticks later nothing more has arrived: no duplicate was on its way.
    time.sleep(3)
    received = list(scale_out.sink.received)

    assert len(set(message_ids)) == MESSAGES
    recipients = Counter(rcpt for message in received for rcpt in message.rcpt_tos)
    assert recipients == Counter({f"rcpt{index}@example.com": 1 for index in range(MESSAGES)})
    assert len({message.parsed["Message-ID"] for message in received}) == MESSAGES
    deliveries = Delivery.objects.filter(message_id__in=message_ids)
    assert set(deliveries.values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}
    assert set(deliveries.values_list("attempts", flat=True)) == {1}
    attempts = Attempt.objects.filter(delivery__message_id__in=message_ids)
    assert attempts.count() == MESSAGES
    # Each Attempt names the worker node that sent it; every node belongs to one of the pools.
    per_pool = Counter(
        next(node for node in NODES if worker.startswith(f"scale-{node}"))
        for worker in attempts.values_list("worker", flat=True)
    )
    assert set(per_pool) == set(NODES), per_pool
    assert api_one.requests_served("POST", "/api/v1/messages") == MESSAGES // 2
    assert api_two.requests_served("POST", "/api/v1/messages") == MESSAGES // 2
