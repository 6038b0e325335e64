"""Events of a client without a webhook endpoint are written already fanned out; the flag that
says so (`Client.wants_events`) follows the client's endpoints, also when two changes race.

The services run in this process on the real Postgres; the race test commits from two threads,
each on its own connection.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
from django.db import close_old_connections, connection, transaction

from accounts.models import Client
from deliveries.models import Event, Message
from deliveries.policy import SmtpReply, Stage
from deliveries.services import deliveries_send
from deliveries.smtp import Envelope
from tests.integration.test_webhooks_sending import accept
from webhooks.models import Endpoint, Notification
from webhooks.services import (
    endpoint_create,
    endpoint_delete,
    endpoint_disable,
    endpoint_enable,
    events_fan_out,
    webhooks_tick,
)

pytestmark = pytest.mark.integration
HOOK = "http://127.0.0.1:9/mailhub"  # never called


@pytest.fixture(autouse=True)
def no_url_resolution(settings):
    # endpoint_create checks the URL (it resolves the host); these tests never send to it.
    settings.MAILHUB_WEBHOOK_ALLOW_HTTP = True
    settings.MAILHUB_WEBHOOK_ALLOW_LOOPBACK = True


class Delivering:
    """A transport that delivers everything (the settle path writes the `delivered` events)."""

    def send(self, envelope: Envelope, *, deadline: float) -> dict[str, SmtpReply]:
        ok = SmtpReply(250, "2.0.0 OK", Stage.DATA, "relay.test")
        return {address: ok for address in envelope.recipients}

    def close(self) -> None:
        pass


def accept_and_deliver(actor, *addresses: str) -> list[uuid.UUID]:
    ids = accept(actor, *addresses)
    deliveries_send(message_ids=ids, task_id="t", worker="w", transport=Delivering())
    return ids


def written(client: Client) -> set[tuple[str, bool]]:
    return set(Event.objects.filter(client=client).values_list("type", "fanned_out"))


def wants_events(client: Client) -> bool:
    return Client.objects.get(id=client.id).wants_events


def test_only_the_events_of_a_client_with_an_endpoint_wait_for_the_fan_out(acme, globex):
    endpoint, _ = endpoint_create(client=acme.client, url=HOOK)

    accept_and_deliver(acme, "ann@example.com")
    accept_and_deliver(globex, "eve@example.com")

    assert Message.objects.filter(status="delivered").count() == 2
    # Accept and settle both write events: only acme's wait for the fan-out.
    assert written(acme.client) == {("accepted", False), ("delivered", False)}
    assert written(globex.client) == {("accepted", True), ("delivered", True)}
    assert events_fan_out(limit=100) == (2, 2)
    assert Notification.objects.filter(endpoint=endpoint).count() == 2


def test_the_flag_follows_the_clients_enabled_endpoints(acme):
    assert not wants_events(acme.client)
    endpoint_create(client=acme.client, url=HOOK, enabled=False)
    assert not wants_events(acme.client)

    first, _ = endpoint_create(client=acme.client, url=HOOK)
    second, _ = endpoint_create(client=acme.client, url=HOOK)
    assert wants_events(acme.client)

    endpoint_disable(endpoint=first, reason="test")
    assert wants_events(acme.client)  # the second still wants them
    endpoint_delete(endpoint=second)
    assert not wants_events(acme.client)

    endpoint_enable(endpoint=first)
    assert wants_events(acme.client)
    accept_and_deliver(acme, "ann@example.com")
    assert written(acme.client) == {("accepted", False), ("delivered", False)}


def test_an_endpoint_enabled_behind_the_services_back_is_marked_by_the_next_tick(acme):
    endpoint, _ = endpoint_create(client=acme.client, url=HOOK, enabled=False)
    Endpoint.objects.filter(id=endpoint.id).update(enabled=True)  # as the previous release would

    assert webhooks_tick().clients_marked == 1
    assert wants_events(acme.client)
    assert webhooks_tick().clients_marked == 0


@pytest.mark.django_db(transaction=True)
def test_a_recount_racing_a_creation_never_clears_the_flag_of_the_new_endpoint():
    """Thread A creates an endpoint and holds its transaction open; thread B deletes the client's
    only other endpoint meanwhile, which recounts. B must end up counting A's endpoint: a recount
    that did not wait for A would see no endpoint and clear the flag after A set it."""
    client = Client.objects.create(name="racing")
    old, _ = endpoint_create(client=client, url=HOOK)
    created = threading.Event()
    deleting = threading.Event()
    errors: list[BaseException] = []

    def run(work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    def create() -> None:
        with transaction.atomic():
            endpoint_create(client=client, url=HOOK)
            created.set()
            deleting.wait(5)
            # Give B's recount time to run (and, if it did not lock, to decide) before A commits.
            threading.Event().wait(0.5)

    def delete() -> None:
        created.wait(5)
        deleting.set()
        endpoint_delete(endpoint=old)

    threads = [threading.Thread(target=run, args=(w,)) for w in (create, delete)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    assert not errors
    assert Endpoint.objects.filter(client=client, enabled=True).count() == 1
    assert wants_events(client)
