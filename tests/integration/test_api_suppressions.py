"""/api/v1/suppressions: list, add, remove, per client; a suppressed recipient is recorded as
suppressed at once (never queued)."""

from __future__ import annotations

import pytest

from deliveries.models import Delivery, Suppression
from tests.builders import message_payload
from tests.integration.test_api_input import assert_field_error, assert_problem

pytestmark = pytest.mark.integration

URL = "/api/v1/suppressions"


def add(actor, address, **extra):
    return actor.api.post(URL, {"address": address, **extra}, format="json")


def test_an_address_is_added_listed_read_and_removed(acme):
    response = add(acme, "Ann <ANN@Example.com>", reason="unsubscribe", detail="footer link")
    assert response.status_code == 201, response.content
    assert response.json()["address"] == "ann@example.com"
    assert response.json()["reason"] == "unsubscribe"

    listed = acme.api.get(URL).json()["results"]
    assert [(s["address"], s["reason"], s["detail"]) for s in listed] == [
        ("ann@example.com", "unsubscribe", "footer link")
    ]
    assert acme.api.get(f"{URL}/Ann@example.com").json()["address"] == "ann@example.com"

    assert acme.api.delete(f"{URL}/ANN@example.com").status_code == 204
    assert not Suppression.objects.exists()
    assert_problem(
        acme.api.delete(f"{URL}/ann@example.com"), status=404, code="suppression_not_found"
    )


def test_adding_an_address_twice_keeps_the_first_reason_and_answers_200(acme):
    add(acme, "ann@example.com", reason="complaint")
    again = add(acme, "ann@example.com", reason="manual")
    assert again.status_code == 200, again.content
    assert again.json()["reason"] == "complaint"
    assert Suppression.objects.count() == 1


def test_the_list_filters_by_reason(acme):
    add(acme, "a@example.com", reason="complaint")
    add(acme, "b@example.com")
    listed = acme.api.get(URL, {"reason": "complaint"}).json()["results"]
    assert [s["address"] for s in listed] == ["a@example.com"]


@pytest.mark.parametrize(
    ("payload", "field", "code"),
    [
        ({"address": "not-an-address"}, "address", "invalid_address"),
        ({"address": "a@example.com", "reason": "dislike"}, "reason", "invalid_choice"),
        ({}, "address", "required"),
    ],
)
def test_a_bad_suppression_is_refused(acme, payload, field, code):
    assert_field_error(acme.api.post(URL, payload, format="json"), field=field, code=code)


def test_suppressions_are_per_client(acme, globex):
    add(acme, "ann@example.com")
    assert globex.api.get(URL).json()["results"] == []
    assert_problem(
        globex.api.get(f"{URL}/ann@example.com"), status=404, code="suppression_not_found"
    )
    assert_problem(
        globex.api.delete(f"{URL}/ann@example.com"), status=404, code="suppression_not_found"
    )
    assert Suppression.objects.filter(client=acme.client).exists()
    response = globex.api.post("/api/v1/messages", message_payload(), format="json")
    assert response.json()["status"] == "queued"  # acme's list does not stop globex's mail


def test_mail_to_a_suppressed_address_is_recorded_suppressed_and_the_others_go(acme):
    add(acme, "ann@example.com")
    response = acme.api.post(
        "/api/v1/messages",
        message_payload(to=["ANN@example.com", "bob@example.com"]),
        format="json",
    )
    assert response.status_code == 202, response.content
    statuses = dict(Delivery.objects.values_list("address", "status"))
    assert statuses == {"ANN@example.com": "suppressed", "bob@example.com": "queued"}
    assert Delivery.objects.get(status="suppressed").next_attempt_at is None


def test_after_removal_mail_goes_again(acme):
    add(acme, "ann@example.com")
    acme.api.delete(f"{URL}/ann@example.com")
    response = acme.api.post("/api/v1/messages", message_payload(), format="json")
    assert response.json()["status"] == "queued"
