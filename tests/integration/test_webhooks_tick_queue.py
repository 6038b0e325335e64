"""The webhook tick on its own queue (`webhooks.tick`), consumed by the webhook pool and the
general mail pool: while every webhook process waits on a slow endpoint, ticks still run, so
other clients' new events are fanned out and their endpoints published."""

from __future__ import annotations

import pytest

from deliveries.models import Event
from deliveries.states import EventType
from tests.integration.conftest import wait_until
from tests.integration.test_webhooks_stack import (
    loopback_receivers,
    send,
    start_webhook_pool,
    subscribe,
)
from webhooks.models import Notification

pytestmark = pytest.mark.integration

CONCURRENCY = 2


@pytest.fixture(scope="module")
def webhook_pool(mail_stack):
    """The Procfile's `worker_webhooks`: two processes on `webhooks` and `webhooks.tick`. Its
    requests may wait two minutes, far longer than the test holds them. `mail_stack`'s general
    worker (with beat) consumes `webhooks.tick` too, as the Procfile's `worker` does."""
    worker = start_webhook_pool(
        "webhooks-ticks", concurrency=CONCURRENCY, MAILHUB_WEBHOOK_TIMEOUT_SECONDS="120"
    )
    yield worker
    worker.stop()


@pytest.fixture
def receivers(sink, webhook_pool, settings):
    yield from loopback_receivers(settings, CONCURRENCY + 1)


def test_a_tick_runs_while_every_webhook_process_waits_on_a_slow_endpoint(receivers, acme, globex):
    *slow, fast = receivers
    for receiver in slow:
        receiver.hold()
        subscribe(acme, receiver)
    send(acme, to=["ann@example.com"])
    # Each webhook process is now inside a POST to one of acme's endpoints, which will not
    # answer until the test says so.
    for receiver in slow:
        receiver.wait_until(lambda r: r.in_flight == 1, what="a webhook process held")

    endpoint_id = subscribe(globex, fast)
    message_id = send(globex, to=["bob@example.com"])

    # Fanning globex's events out to its endpoint is a tick's work, and no webhook process is
    # free to run one: the general pool does.
    wait_until(
        lambda: Notification.objects.filter(
            endpoint_id=endpoint_id, event__message_id=message_id
        ).exists(),
        timeout=30,
        what="a tick to fan globex's event out while the webhook pool is held",
    )
    assert [receiver.in_flight for receiver in slow] == [1] * CONCURRENCY  # still held
    assert Event.objects.get(message_id=message_id, type=EventType.ACCEPTED).fanned_out

    for receiver in slow:
        receiver.release()
    fast.wait_until(
        lambda r: any(e["message_id"] == str(message_id) for e in r.events()),
        timeout=60,
        what="globex's events, once a webhook process is free",
    )
