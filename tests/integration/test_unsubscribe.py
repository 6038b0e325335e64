"""One-click unsubscribe (RFC 8058): the `unsubscribe` field of a message through the API, and
the `/u/<token>` endpoint: a POST suppresses the address for the client and writes one
`unsubscribed` event, a second is harmless, a GET only shows a page, and no token that this
deployment did not make, however hostile, is anything but a 404."""

from __future__ import annotations

import pytest
from django.test import Client as HttpClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deliveries.models import Delivery, Event, Message, Suppression
from deliveries.services import delivery_transition
from deliveries.states import DeliveryStatus
from deliveries.tokens import BOUNCE, UNSUBSCRIBE, delivery_token
from tests.builders import message_payload

pytestmark = pytest.mark.integration
S = DeliveryStatus


@pytest.fixture
def browser() -> HttpClient:
    return HttpClient(enforce_csrf_checks=True)


def send(actor, **overrides) -> Message:
    response = actor.api.post("/api/v1/messages", message_payload(**overrides), format="json")
    assert response.status_code == 202, response.content
    return Message.objects.get(id=response.json()["id"])


def delivered(message: Message) -> Delivery:
    delivery = message.deliveries.get()
    for status in (S.SENDING, S.DELIVERED):
        assert delivery_transition(delivery_id=delivery.id, to=status)
    return delivery


def link(delivery: Delivery) -> str:
    return f"/u/{delivery_token(UNSUBSCRIBE, delivery.id)}"


def written() -> tuple[list, list]:
    events = list(Event.objects.filter(type="unsubscribed").values_list("recipient", "delivery"))
    suppressions = list(Suppression.objects.values_list("client", "address", "reason"))
    return events, suppressions


# -- the field -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False, None])
def test_the_unsubscribe_field_is_stored_as_given(acme, value):
    assert send(acme, unsubscribe=value).unsubscribe is value


def test_a_message_without_the_field_stores_null(acme):
    assert send(acme).unsubscribe is None


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, [], {}, "\u2028"])
def test_anything_but_true_false_or_null_is_a_400(acme, value):
    response = acme.api.post("/api/v1/messages", message_payload(unsubscribe=value), format="json")
    assert response.status_code == 400
    assert "unsubscribe" in str(response.json())


def test_asking_for_unsubscribe_links_and_giving_ones_own_is_a_400(acme):
    payload = message_payload(unsubscribe=True, headers={"list-unsubscribe": "<mailto:u@x.test>"})
    response = acme.api.post("/api/v1/messages", payload, format="json")
    assert response.status_code == 400
    assert "List-Unsubscribe" in str(response.json())


def test_a_batch_takes_the_field_from_its_defaults_and_its_messages(acme):
    payload = {
        "defaults": message_payload(unsubscribe=True),
        "messages": [
            {"to": ["ann@example.com"]},
            {"to": ["bob@example.com"], "unsubscribe": False},
        ],
    }
    response = acme.api.post("/api/v1/messages/batch", payload, format="json")
    assert response.status_code == 202, response.content
    ids = [item["id"] for item in response.json()["results"]]
    assert [Message.objects.get(id=i).unsubscribe for i in ids] == [True, False]


# -- the endpoint ----------------------------------------------------------------------------


def test_a_post_suppresses_the_address_and_writes_one_event_and_a_second_changes_nothing(
    acme, browser
):
    delivery = delivered(send(acme, to=["Ann@Example.com"]))

    first = browser.post(link(delivery), "List-Unsubscribe=One-Click",
                         content_type="application/x-www-form-urlencoded")  # fmt: skip
    after_first = written()
    second = browser.post(link(delivery))

    assert first.status_code == second.status_code == 200
    assert b"unsubscribed" in first.content
    assert after_first == (
        [("Ann@Example.com", delivery.id)],
        [(acme.client.id, "ann@example.com", "unsubscribe")],
    )
    assert written() == after_first
    delivery.refresh_from_db()
    assert delivery.status == S.DELIVERED  # the delivery stays as it is


def test_a_get_shows_a_form_that_posts_and_writes_nothing(acme, browser):
    delivery = delivered(send(acme))

    response = browser.get(link(delivery))

    assert response.status_code == 200
    assert b'<form method="post">' in response.content
    assert written() == ([], [])


def test_an_address_is_suppressed_even_when_its_delivery_was_not_delivered(acme, browser):
    delivery = send(acme).deliveries.get()  # still queued: no event, but the person asked

    assert browser.post(link(delivery)).status_code == 200
    assert written() == ([], [(acme.client.id, "ann@example.com", "unsubscribe")])


def test_a_token_for_another_purpose_or_a_gone_delivery_is_a_404(acme, browser):
    delivery = delivered(send(acme))
    bounce_token = delivery_token(BOUNCE, delivery.id)
    gone = delivery_token(UNSUBSCRIBE, delivery.id + 1000)

    for path in (f"/u/{bounce_token}", f"/u/{gone}"):
        assert browser.post(path).status_code == 404
        assert browser.get(path).status_code == 404
    assert written() == ([], [])


def test_other_methods_are_refused(acme, browser):
    delivery = delivered(send(acme))
    assert browser.put(link(delivery)).status_code == 405
    assert written() == ([], [])


HOSTILE = st.one_of(
    st.text(max_size=200),
    st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz.", max_size=40),
    st.sampled_from(["\x00", "%00", "..", "a.aaaaaaaaaaaaaaaa", "\u2028", "\ud800", "a" * 10000]),
    st.builds(lambda s: s + "." + "a" * 16, st.text(alphabet="0123456789abcdefz", max_size=14)),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(token=HOSTILE)
def test_a_forged_or_garbled_token_is_never_a_500_and_writes_nothing(acme, browser, token):
    for method in (browser.get, browser.post):
        try:
            response = method("/u/" + token)
        except UnicodeEncodeError:  # a lone surrogate cannot even be put in a request
            continue
        assert response.status_code in {400, 404}, (token, response.status_code)
    assert written() == ([], [])
