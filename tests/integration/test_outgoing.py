"""What the real worker puts on the wire to a real SMTP server: the envelope sender (VERP), the
DKIM signature and the one-click unsubscribe headers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import dkim
import pytest
from django.conf import settings
from django.test import Client as HttpClient

from deliveries.models import Delivery, Event, Suppression
from deliveries.tokens import UNSUBSCRIBE, delivery_of_verp_address, read_delivery_token
from domains.models import SendingDomain
from tests.builders import Actor, message_payload
from tests.integration.conftest import one_worker, wait_until_final
from tests.integration.dkim_rows import dns_of, signing_domain
from tests.support.sink import SmtpSink

pytestmark = pytest.mark.integration

BOUNCE_DOMAIN = "bounces.mailhub.test"
PUBLIC_URL = "https://mail.mailhub.test"


@pytest.fixture(scope="module")
def outgoing_stack(django_db_setup, django_db_blocker) -> Iterator[SmtpSink]:
    """One worker (every queue, and beat) sending with VERP envelope senders to a sink, its
    unsubscribe links under ``PUBLIC_URL``."""
    queues = [*settings.MAILHUB_QUEUES.values(), settings.MAILHUB_DISPATCH_QUEUE]
    overrides = {"MAILHUB_BOUNCE_DOMAIN": BOUNCE_DOMAIN, "MAILHUB_PUBLIC_URL": PUBLIC_URL}
    with one_worker("outgoing", queues, **overrides) as (sink, _):
        yield sink


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


def test_mail_from_a_domain_with_an_active_key_arrives_signed_and_verifies(outgoing, acme):
    key = signing_domain(acme.client, "shop.test")
    message_id = post(acme, to=["ann@example.com"])

    [received] = outgoing.wait_for(1)
    wait_until_final(message_id)

    assert received.content.startswith(b"DKIM-Signature: ")
    assert dkim.verify(received.content, dnsfunc=dns_of(key))


def test_mail_from_a_domain_without_a_key_arrives_unsigned(outgoing, acme):
    signing_domain(acme.client, "shop.test")
    SendingDomain.objects.create(
        client=acme.client, domain="other.test", state=SendingDomain.State.VERIFIED
    )
    message_id = post(acme, **{"from": "Other <no-reply@other.test>"})

    [received] = outgoing.wait_for(1)
    wait_until_final(message_id)

    assert b"DKIM-Signature" not in received.content


def test_low_priority_mail_carries_a_signed_one_click_link_per_recipient_that_unsubscribes(
    outgoing, acme
):
    key = signing_domain(acme.client, "shop.test")
    message_id = post(acme, to=["ann@example.com", "bob@example.com"], priority="low")

    received = outgoing.wait_for(2)
    wait_until_final(message_id)

    links = {}
    for r in received:
        delivery = Delivery.objects.get(message_id=message_id, address=r.rcpt_tos[0])
        assert r.parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = r.parsed["List-Unsubscribe"].strip("<>")
        assert url.startswith(f"{PUBLIC_URL}/u/")
        assert read_delivery_token(UNSUBSCRIBE, url.rsplit("/", 1)[1]) == delivery.id
        assert dkim.verify(r.content, dnsfunc=dns_of(key))
        signed = r.parsed["DKIM-Signature"].replace(" ", "").replace("\n", "")
        assert "list-unsubscribe:list-unsubscribe-post" in signed
        links[delivery.address] = url.removeprefix(PUBLIC_URL)

    response = HttpClient(enforce_csrf_checks=True).post(links["bob@example.com"])

    assert response.status_code == 200
    assert list(Suppression.objects.values_list("address", "reason")) == [
        ("bob@example.com", "unsubscribe")
    ]
    assert Event.objects.filter(message_id=message_id, type="unsubscribed").count() == 1


def test_normal_priority_mail_has_no_unsubscribe_link_unless_asked(outgoing, acme):
    plain = post(acme, to=["ann@example.com"])
    asked = post(acme, to=["bob@example.com"], unsubscribe=True)

    received = {r.rcpt_tos[0]: r for r in outgoing.wait_for(2)}
    wait_until_final(plain)
    wait_until_final(asked)

    assert "List-Unsubscribe" not in received["ann@example.com"].parsed
    assert "List-Unsubscribe" in received["bob@example.com"].parsed
