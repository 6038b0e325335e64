"""Hostile content that slipped past validation (rows written by an older version, a bug) on the
real stack: a message that cannot be built fails alone, with a reason; the rest of its task is
delivered at once; and the destination domain's connection slot is free again when the task ends.

The messages are written straight through the accept service, bypassing the API's validation,
and handed to the workers in ONE task, as the publisher batches them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.test import override_settings
from kombu import Queue

from deliveries.models import Attempt, Delivery, Event, Message, Suppression
from deliveries.publisher import messages_publish
from deliveries.services import AttachmentDraft, MessageDraft, Recipient, messages_accept
from deliveries.states import DeliveryStatus, MessageStatus
from mailhub.celery import app
from tests.integration.conftest import wait_until
from tests.integration.test_faults import Stack
from tests.support.sink import SmtpSink

pytestmark = pytest.mark.integration

S = DeliveryStatus
#: One connection at a time: a delivery left `sending` by a failed task would hold it.
LIMITED = "poison.example"

#: Each kind of header content validation now refuses but an older version stored.
POISON = {
    "line separator in the subject": {"subject": "hi\u2028x"},
    "vertical tab in the subject": {"subject": "a\x0bb"},
    "file separator in a custom header": {"headers": {"X-Note": "a\x1cb"}},
    "next line in an attachment's filename": {
        "attachments": [AttachmentDraft("report\x85.txt", "text/plain", b"numbers\n")]
    },
    "encoded CRLF in a display name": {"name": "=?utf-8?q?a=0D=0Ab?="},
    "non-ASCII envelope address": {"address": "j\u00f6rg@" + LIMITED},
}


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker) -> Iterator[tuple[Stack, SmtpSink]]:
    sink = SmtpSink().start()
    running = Stack(
        {
            "MAILHUB_SMTP_URL": sink.url,
            "MAILHUB_DOMAIN_LIMITS": f"{LIMITED}=1/0",
            "MAILHUB_DOMAIN_WAIT_SECONDS": "0.2",
            # Long enough that a delivery left to its lease cannot pass for one settled.
            "MAILHUB_LEASE_SECONDS": "60",
        }
    )
    try:
        running.start_worker(concurrency=2)
        yield running, sink
    finally:
        running.stop()
        sink.stop()


@pytest.fixture
def parked(stack, transactional_db) -> Iterator[dict[str, str]]:
    """Queues nobody consumes: the accept service publishes there, so the test alone decides
    which task carries which messages. The test's rows are committed, for the workers."""
    running, _ = stack
    queues = {priority: f"{running.prefix}parked.{priority}" for priority in running.queues}
    yield queues
    with app.connection_for_write() as connection:
        for name in queues.values():
            Queue(name).bind(connection.default_channel).delete()


def draft(
    address: str,
    *,
    name: str = "",
    subject: str = "Your code",
    headers: dict | None = None,
    attachments: list | None = None,
) -> MessageDraft:
    return MessageDraft(
        sender="Shop <no-reply@shop.test>",
        recipients=[Recipient(address=address, name=name)],
        subject=subject,
        text="Your code is 123456.",
        headers=headers or {},
        attachments=attachments or [],
    )


def poison_draft(index: int, kind: dict) -> MessageDraft:
    fields = dict(kind)
    return draft(fields.pop("address", f"poison{index}@{LIMITED}"), **fields)


def test_poison_messages_fail_alone_and_the_rest_of_their_task_goes_out_at_once(
    stack, parked, acme, globex
):
    running, sink = stack
    sink.reset()
    with override_settings(MAILHUB_QUEUES=parked):
        poison = messages_accept(
            client=acme.client, drafts=[poison_draft(i, k) for i, k in enumerate(POISON.values())]
        )
        # Two clients' mail in the same task: globex must not pay for acme's poison.
        normal = messages_accept(
            client=acme.client,
            drafts=[draft(f"acme{i}@{LIMITED}") for i in range(5)]
            + [draft(f"acme{i}@example.com") for i in range(5, 10)],
        ) + messages_accept(
            client=globex.client,
            drafts=[draft(f"globex{i}@{LIMITED}") for i in range(5)]
            + [draft(f"globex{i}@example.com") for i in range(5, 9)],
        )
    assert len(normal) == 19
    # Poison first, so that today nothing after it would be sent at all, and between the rest.
    order = [poison[0], *normal[:5], *poison[1:3], *normal[5:12], *poison[3:], *normal[12:]]
    started = time.monotonic()
    with override_settings(MAILHUB_QUEUES=running.queues, MAILHUB_TASK_BATCH_SIZE=len(order)):
        assert messages_publish(messages=[(m.id, m.priority) for m in order]) == len(order)

    received = sink.wait_for(19, timeout=10)
    arrived_in = time.monotonic() - started
    poison_ids = [m.id for m in poison]
    wait_until(
        lambda: (
            Message.objects.filter(id__in=poison_ids, status=MessageStatus.FAILED).count()
            == len(poison)
        ),
        timeout=10,
        what="every poison message to be failed",
    )
    settled_in = time.monotonic() - started
    print(f"19 normal messages arrived in {arrived_in:.2f} s; poison failed in {settled_in:.2f} s")

    expected = sorted(d.address for m in normal for d in m.deliveries.all())
    assert sorted(r for message in received for r in message.rcpt_tos) == expected
    wait_until(
        lambda: Delivery.objects.filter(message__in=normal, status=S.DELIVERED).count() == 19,
        timeout=10,
        what="the 19 deliveries to be recorded",
    )
    attempts = Attempt.objects.filter(delivery__message__in=order)
    assert len(set(attempts.values_list("task_id", flat=True))) == 1, "not one task"
    for kind, message in zip(POISON, poison, strict=True):
        delivery = message.deliveries.get()
        assert delivery.status == S.FAILED, kind
        assert delivery.last_reply.startswith(
            ("the message could not be built: ", "the envelope could not be written: ")
        ), (kind, delivery.last_reply)
        print(f"{kind}: {delivery.last_reply}")
        [attempt] = delivery.attempt_set.all()
        assert attempt.outcome == Attempt.Outcome.FAILED and attempt.reply, kind
        assert Event.objects.filter(delivery=delivery, type=Event.Type.FAILED).count() == 1, kind
    # Not a bounce: nothing is known against the recipients.
    assert not Suppression.objects.filter(
        address__in=[m.deliveries.get().address.lower() for m in poison]
    ).exists()
    assert not Delivery.objects.filter(message__in=order, status=S.SENDING).exists()

    # The domain's single connection is free again: its next message goes out at once.
    sink.reset()
    again = time.monotonic()
    with override_settings(MAILHUB_QUEUES=running.queues):
        [after] = messages_accept(client=globex.client, drafts=[draft(f"after@{LIMITED}")])
    [arrived] = sink.wait_for(1, timeout=5)
    print(f"the domain's next message arrived in {time.monotonic() - again:.2f} s")
    assert arrived.rcpt_tos == (f"after@{LIMITED}",)
    wait_until(
        lambda: after.deliveries.get().status == S.DELIVERED, timeout=5, what="it to be recorded"
    )
