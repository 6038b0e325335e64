"""What the real worker puts on the wire to a real SMTP server: the envelope sender (VERP), the
DKIM signature and the one-click unsubscribe headers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings

from deliveries.models import Delivery
from deliveries.tokens import delivery_of_verp_address
from tests.builders import Actor, message_payload
from tests.integration.conftest import wait_until_final, worker_env, worker_log_dir
from tests.support.sink import SmtpSink
from tests.support.workers import WorkerProcess, delete_queues

pytestmark = pytest.mark.integration

BOUNCE_DOMAIN = "bounces.mailhub.test"


@pytest.fixture(scope="module")
def outgoing_stack(django_db_setup, django_db_blocker) -> Iterator[SmtpSink]:
    """One worker (every queue, and beat) sending with VERP envelope senders to a sink."""
    sink = SmtpSink().start()
    env = worker_env(sink, MAILHUB_BOUNCE_DOMAIN=BOUNCE_DOMAIN)
    worker = WorkerProcess(
        "outgoing",
        [*settings.MAILHUB_QUEUES.values(), settings.MAILHUB_DISPATCH_QUEUE],
        env=env,
        log_dir=worker_log_dir(),
        concurrency=1,
        beat=True,
    )
    try:
        worker.start()
        yield sink
    finally:
        worker.stop()
        sink.stop()
        delete_queues(settings.MAILHUB_QUEUE_PREFIX)


@pytest.fixture
def outgoing(outgoing_stack: SmtpSink, transactional_db) -> SmtpSink:
    outgoing_stack.reset()
    return outgoing_stack


def post(actor: Actor, **overrides) -> uuid.UUID:
    response = actor.api.post("/api/v1/messages", message_payload(**overrides), format="json")
    assert response.status_code == 202, response.content
    return uuid.UUID(response.json()["id"])


def test_each_recipient_gets_its_own_transaction_from_its_verp_address(outgoing, acme):
    message_id = post(acme, to=["ann@example.com", "bob@example.com"])

    received = outgoing.wait_for(2)
    wait_until_final(message_id)

    assert sorted(r.rcpt_tos for r in received) == [("ann@example.com",), ("bob@example.com",)]
    for r in received:
        delivery = Delivery.objects.get(message_id=message_id, address=r.rcpt_tos[0])
        assert delivery_of_verp_address(r.mail_from, bounce_domain=BOUNCE_DOMAIN) == delivery.id
        assert delivery.status == "delivered"
