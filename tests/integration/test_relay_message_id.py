"""The relay's message id, read by a real worker from a real relay's 250 reply to DATA, is
recorded on every delivery of the transaction, and an ESP event naming it finds the delivery."""

from __future__ import annotations

import json
import uuid

import pytest

from deliveries.models import Delivery
from deliveries.states import DeliveryStatus
from tests.builders import message_payload
from tests.integration.conftest import wait_until_final
from tests.integration.test_esp_webhooks import SES_ID, post_sns, ses_event, sns

pytestmark = pytest.mark.integration
S = DeliveryStatus


def post(actor, **overrides) -> uuid.UUID:
    response = actor.api.post("/api/v1/messages", message_payload(**overrides), format="json")
    assert response.status_code == 202, response.content
    return uuid.UUID(response.json()["id"])


def relay_ids(message_id) -> dict[str, str]:
    return dict(
        Delivery.objects.filter(message_id=message_id).values_list("address", "relay_message_id")
    )


def test_a_relay_answering_queued_as_has_its_id_recorded_on_each_recipient(sink, acme):
    sink.script_data("250 Ok: queued as ABC123")

    message_id = post(acme, to=["ann@example.com", "bob@example.com"])

    assert wait_until_final(message_id).status == "delivered"
    # One transaction, one reply: both recipients share the id; an event's recipient tells
    # them apart.
    assert relay_ids(message_id) == {"ann@example.com": "ABC123", "bob@example.com": "ABC123"}


def test_a_relay_that_gives_no_id_leaves_it_empty(sink, acme):
    message_id = post(acme)  # the sink answers "250 2.0.0 OK: queued"

    assert wait_until_final(message_id).status == "delivered"
    assert relay_ids(message_id) == {"ann@example.com": ""}


def test_a_delivery_the_relay_refused_records_no_id(sink, acme):
    sink.script_rcpt("ann@example.com", "550 5.1.1 no such user")

    message_id = post(acme)

    assert wait_until_final(message_id).status == "bounced"
    assert relay_ids(message_id) == {"ann@example.com": ""}


def test_an_ses_bounce_finds_the_delivery_the_worker_sent_through_ses(sink, acme, client):
    sink.script_data(f"250 Ok {SES_ID}")
    message_id = post(acme, to=["ann@example.com", "bob@example.com"])
    wait_until_final(message_id)
    bob = Delivery.objects.get(message_id=message_id, address="bob@example.com")
    assert bob.relay_message_id == SES_ID

    event = json.loads(ses_event("ses_bounce.json", bob))
    event["mail"]["commonHeaders"]["messageId"] = "<not-used@example.com>"  # the id alone
    assert post_sns(client, sns(json.dumps(event))).status_code == 200

    statuses = dict(Delivery.objects.filter(message_id=message_id).values_list("address", "status"))
    assert statuses == {"ann@example.com": S.DELIVERED, "bob@example.com": S.BOUNCED}
