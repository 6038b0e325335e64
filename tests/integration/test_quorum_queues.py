"""MAILHUB_QUEUE_TYPE=quorum on the real broker: an API and a worker of their own, in a vhost of
their own (with the production work policy, its delivery limit lowered to 2), deliver mail end to
end; RabbitMQ says the queues are quorum queues, consumed with a prefetch per consumer and no
global QoS; and a task handed back more times than the delivery limit is dead-lettered while
its mail still goes out, because Postgres, not RabbitMQ, holds what is owed."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings
from kombu import Connection, Exchange, Queue

from deliveries.models import Delivery
from deliveries.states import DeliveryStatus
from tests.builders import Actor, make_actor, message_payload
from tests.integration.conftest import wait_until_final, worker_env, worker_log_dir
from tests.support.api_server import ApiServer, post_json
from tests.support.rabbitmq import broker_url, listed, own_vhost, rabbitmqctl
from tests.support.sink import SmtpSink
from tests.support.workers import ROOT, WorkerProcess

pytestmark = pytest.mark.integration

CONCURRENCY = 2
DELIVERY_LIMIT = 2  # production's is 20 (deploy/rabbitmq/definitions.json)
DEFINITIONS = json.loads((ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text())


def definition(kind: str, name: str) -> dict:
    [found] = [item for item in DEFINITIONS[kind] if item["name"] == name]
    return found


class QuorumStack:
    """An API process and (when asked) a worker with beat, on quorum queues in ``vhost``."""

    def __init__(self, vhost: str, sink: SmtpSink) -> None:
        self.vhost = vhost
        self.sink = sink
        self.url = broker_url(vhost)
        self.prefix = f"quorum-{uuid.uuid4().hex[:6]}."
        self.queues = [
            self.prefix + queue.name.removeprefix(settings.MAILHUB_QUEUE_PREFIX)
            for queue in settings.CELERY_TASK_QUEUES
        ]
        self.env = worker_env(
            sink,
            CELERY_BROKER_URL=self.url,
            MAILHUB_QUEUE_TYPE="quorum",
            MAILHUB_QUEUE_PREFIX=self.prefix,
            # A task the broker dropped is published again by the dispatcher a second later.
            MAILHUB_REPUBLISH_AFTER_SECONDS="1",
        )
        self.api = ApiServer("quorum", env=self.env, log_dir=worker_log_dir())
        self.worker: WorkerProcess | None = None
        # Where the production work policy sends a task past its delivery limit.
        work = definition("policies", "mailhub-work")
        self.dead_letters = Queue(
            definition("queues", "mailhub.dead-letter")["name"],
            Exchange(work["definition"]["dead-letter-exchange"], "fanout", durable=True),
            durable=True,
            queue_arguments={"x-queue-type": "quorum"},
        )

    def queue(self, name: str) -> str:
        return self.prefix + name

    def start_worker(self) -> WorkerProcess:
        if self.worker is None:
            self.worker = WorkerProcess(
                "quorum",
                self.queues,
                env=self.env,
                log_dir=worker_log_dir(),
                concurrency=CONCURRENCY,
                beat=True,
            ).start()
        return self.worker

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def send(self, actor: Actor, **overrides) -> uuid.UUID:
        connection = self.api.connect()
        try:
            status, body = post_json(
                connection, "/api/v1/messages", message_payload(**overrides), key=actor.key
            )
        finally:
            connection.close()
        assert status == 202, body
        return uuid.UUID(body["id"])


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker) -> Iterator[QuorumStack]:
    sink = SmtpSink().start()
    with own_vhost(f"mh-test-{uuid.uuid4().hex[:8]}") as vhost:
        stack = QuorumStack(vhost, sink)
        # The production policy of the mail and webhook queues, matched to this run's names.
        work = definition("policies", "mailhub-work")
        rabbitmqctl(
            "set_policy",
            "-p",
            vhost,
            "--apply-to",
            "queues",
            "--priority",
            str(work["priority"]),
            work["name"],
            "^" + re.escape(stack.prefix) + work["pattern"].removeprefix("^"),
            json.dumps({**work["definition"], "delivery-limit": DELIVERY_LIMIT}),
        )
        with Connection(stack.url) as connection:
            stack.dead_letters.bind(connection.default_channel).declare()
        stack.api.start()
        try:
            yield stack
        finally:
            stack.stop_worker()
            stack.api.stop()
            sink.stop()


@pytest.fixture
def actor(transactional_db) -> Actor:
    """Committed, so that the API and worker processes see the client and its key."""
    return make_actor("quorum")


def test_a_task_handed_back_past_the_delivery_limit_is_dead_lettered_and_its_mail_still_goes_out(
    stack, actor
):
    stack.stop_worker()  # nothing consumes: the test plays the worker that dies on the task
    message_id = stack.send(actor, to=["ann@example.com"])
    queue = Queue(stack.queue("mail.normal"), queue_arguments={"x-queue-type": "quorum"})

    deliveries = 0
    with Connection(stack.url) as connection:
        channel = connection.default_channel
        queue = queue.bind(channel)
        queue.declare()  # as the API declares it: the test may ask before the API published
        deadline = time.monotonic() + 30
        while (task := queue.get(no_ack=False)) is None and time.monotonic() < deadline:
            time.sleep(0.1)  # the API publishes after its commit
        while task is not None:
            assert task.headers["task"] == "deliveries.tasks.deliver_messages"
            assert task.decode()[0] == [[str(message_id)]]  # args: the message ids
            deliveries += 1
            task.reject(requeue=True)  # a worker lost while running it hands it back so
            task = queue.get(no_ack=False)
        dead = stack.dead_letters.bind(channel).get(no_ack=True)

    # Delivered once and handed back twice more, then moved aside by RabbitMQ itself.
    assert deliveries == DELIVERY_LIMIT + 1
    assert dead is not None
    [death] = dead.headers["x-death"]
    assert (death["reason"], death["queue"]) == ("delivery_limit", stack.queue("mail.normal"))
    assert Delivery.objects.get(message_id=message_id).status == DeliveryStatus.QUEUED

    stack.start_worker()  # its dispatcher publishes the still `queued` row again

    assert wait_until_final(message_id, timeout=60).status == "delivered"
    assert stack.sink.addresses_received().count("ann@example.com") == 1


def test_a_worker_on_quorum_queues_delivers_mail_with_a_prefetch_per_consumer(stack, actor):
    worker = stack.start_worker()
    high = stack.send(actor, to=["bob@example.com"], priority="high")
    low = stack.send(actor, to=["carl@example.com"], priority="low")

    assert wait_until_final(high, timeout=60).status == "delivered"
    assert wait_until_final(low, timeout=60).status == "delivered"
    queues = listed("queues", "name", "type", vhost=stack.vhost)
    types = {row["name"]: row["type"] for row in queues}
    assert {name: types.get(name) for name in stack.queues} == dict.fromkeys(stack.queues, "quorum")
    # Celery's native delayed delivery is left out: none of its 28 queues and exchanges.
    assert not [name for name in types if name.startswith("celery_delayed")]
    exchanges = {row["name"] for row in listed("exchanges", "name", vhost=stack.vhost)}
    assert not [name for name in exchanges if name.startswith("celery_delayed")]
    # Quorum queues refuse global QoS: the worker limits each consumer instead, to its
    # concurrency, so it may hold that many unacknowledged tasks from every queue it consumes.
    consumers = listed("consumers", "queue_name", "prefetch_count", vhost=stack.vhost)
    prefetch = {row["queue_name"]: row["prefetch_count"] for row in consumers}
    assert {name: prefetch.get(name) for name in stack.queues} == dict.fromkeys(
        stack.queues, CONCURRENCY
    )
    channels = [
        channel
        for channel in listed("channels", "vhost", "consumer_count", "global_prefetch_count")
        if channel["vhost"] == stack.vhost and channel["consumer_count"]
    ]
    assert channels and {channel["global_prefetch_count"] for channel in channels} == {0}
    assert "Global QoS is disabled" in worker.log_path.read_text()
