"""POST /api/v1/messages against the real Postgres: bad input is refused in one shape, stores
nothing; good input stores one message and one delivery per distinct recipient."""

import json
import uuid

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.services import api_key_revoke
from deliveries.models import Delivery, Message
from tests.builders import message_payload

pytestmark = pytest.mark.integration

URL = "/api/v1/messages"
PROBLEM_FIELDS = {"type", "title", "status", "code", "detail"}


def assert_problem(response, *, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert set(body) >= PROBLEM_FIELDS, body
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith("/" + code)
    assert body["title"]
    assert body["detail"]
    return body


def assert_field_error(response, *, field: str | None, code: str) -> None:
    body = assert_problem(response, status=400, code="validation_error")
    assert isinstance(body["errors"], list)
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in body["errors"]
    ], body["errors"]
    assert all(e["message"] for e in body["errors"])


def assert_nothing_stored() -> None:
    assert Message.objects.count() == 0
    assert Delivery.objects.count() == 0


def without(field: str, **overrides) -> dict:
    payload = message_payload(**overrides)
    del payload[field]
    return payload


# -- validation errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field", "code"),
    [
        pytest.param(without("from"), "from", "required", id="missing from"),
        pytest.param(without("to"), "to", "required", id="no recipients"),
        pytest.param(without("text"), "text", "required", id="no body"),
        pytest.param(
            message_payload(**{"from": "not-an-address"}),
            "from",
            "invalid_address",
            id="malformed from",
        ),
        pytest.param(
            message_payload(to=["ann@example.com", "not-an-address"]),
            "to[1]",
            "invalid_address",
            id="malformed to",
        ),
        pytest.param(
            message_payload(cc=["a@b.cd, c@d.ef"]),
            "cc[0]",
            "invalid_address",
            id="two addresses in one string",
        ),
        pytest.param(
            message_payload(bcc=["jörg@example.com"]),
            "bcc[0]",
            "non_ascii",
            id="non-ascii address",
        ),
        pytest.param(
            message_payload(subject="Hi\r\nBcc: x@y.zz"),
            "subject",
            "line_break",
            id="CRLF in subject",
        ),
        pytest.param(
            message_payload(headers={"X-Tag": "a\r\nBcc: x@y.zz"}),
            "headers.X-Tag",
            "invalid_header",
            id="CRLF in header value",
        ),
        pytest.param(
            message_payload(headers={"Bcc": "x@y.zz"}),
            "headers.Bcc",
            "invalid_header",
            id="reserved header",
        ),
        pytest.param(
            message_payload(priority="urgent"), "priority", "invalid_choice", id="bad priority"
        ),
        pytest.param(message_payload(texte="typo"), "texte", "unknown_field", id="unknown field"),
        pytest.param(message_payload(to="ann@example.com"), "to", "not_a_list", id="to not list"),
    ],
)
def test_bad_input_is_refused_with_the_field_and_code_and_stores_nothing(
    acme, payload, field, code
):
    response = acme.api.post(URL, payload, format="json")
    assert_field_error(response, field=field, code=code)
    assert_nothing_stored()


def test_the_detail_of_a_validation_error_names_the_field(acme):
    response = acme.api.post(URL, message_payload(subject="Hi\r\nBcc: x@y.zz"), format="json")
    body = assert_problem(response, status=400, code="validation_error")
    assert "subject" in body["detail"]


def test_a_body_over_the_limit_is_refused_and_one_at_the_limit_is_accepted(acme, settings):
    settings.MAILHUB_MAX_BODY_BYTES = 1024
    over = acme.api.post(URL, message_payload(text="é" * 512 + "!"), format="json")
    assert_field_error(over, field="text", code="max_size")
    assert_nothing_stored()

    at_limit = acme.api.post(URL, message_payload(text="é" * 512), format="json")
    assert at_limit.status_code == 202, at_limit.content
    assert Message.objects.count() == 1


def test_a_request_larger_than_django_accepts_gets_a_clear_refusal(acme, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    settings.MAILHUB_MAX_BODY_BYTES = 1024 * 1024
    response = acme.api.post(URL, message_payload(text="x" * 10_000), format="json")
    assert response.status_code in (400, 413), response.status_code
    assert response["Content-Type"].startswith("application/problem+json")
    assert set(response.json()) >= PROBLEM_FIELDS
    assert_nothing_stored()


def test_invalid_json_is_a_parse_error(acme):
    response = acme.api.post(
        URL, data='{"from": "a@b.cd", "to": [', content_type="application/json"
    )
    assert_problem(response, status=400, code="parse_error")
    assert_nothing_stored()


def test_a_json_array_instead_of_an_object_is_refused(acme):
    response = acme.api.post(
        URL, data=json.dumps([message_payload()]), content_type="application/json"
    )
    assert_field_error(response, field=None, code="invalid")
    assert_nothing_stored()


def test_a_body_that_is_not_json_is_an_unsupported_media_type(acme):
    response = acme.api.post(URL, data="from: a@b.cd", content_type="text/plain")
    assert_problem(response, status=415, code="unsupported_media_type")
    assert_nothing_stored()


# -- authentication ----------------------------------------------------------------------------


def test_a_request_without_a_key_is_unauthenticated_and_says_how_to_authenticate(db):
    response = APIClient().post(URL, message_payload(), format="json")
    assert_problem(response, status=401, code="not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert_nothing_stored()


@pytest.mark.parametrize(
    "authorization",
    ["Bearer mh_not-a-real-key", "Basic dXNlcjpwYXNz", "Bearer "],
)
def test_a_request_with_an_invalid_key_is_refused(acme, authorization):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=authorization)
    response = api.post(URL, message_payload(), format="json")
    assert_problem(response, status=401, code="invalid_api_key")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert_nothing_stored()


def test_a_request_with_a_revoked_key_is_refused(acme):
    assert api_key_revoke(key=ApiKey.objects.get(client=acme.client))
    response = acme.api.post(URL, message_payload(), format="json")
    assert_problem(response, status=401, code="invalid_api_key")
    assert_nothing_stored()


def test_the_key_may_also_come_in_x_api_key(acme):
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=acme.key)
    response = api.post(URL, message_payload(), format="json")
    assert response.status_code == 202, response.content


# -- accepted mail -----------------------------------------------------------------------------


def test_a_valid_message_is_accepted_with_one_delivery_per_recipient(acme):
    payload = message_payload(
        to=["Ann <ann@example.com>"], cc=["bob@example.com"], bcc=["cy@example.com"]
    )
    response = acme.api.post(URL, payload, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    message = Message.objects.get()
    assert body["id"] == str(message.id)
    assert body["status"] == "queued"
    assert response["Location"] == f"{URL}/{message.id}"
    assert message.client == acme.client
    deliveries = sorted(message.deliveries.values_list("address", "name", "kind", "status"))
    assert deliveries == [
        ("ann@example.com", "Ann", "to", "queued"),
        ("bob@example.com", "", "cc", "queued"),
        ("cy@example.com", "", "bcc", "queued"),
    ]


def test_a_recipient_named_twice_in_any_case_gets_one_delivery(acme):
    payload = message_payload(to=["ann@example.com"], bcc=["ANN@example.com"])
    response = acme.api.post(URL, payload, format="json")
    assert response.status_code == 202, response.content
    assert Message.objects.count() == 1
    delivery = Delivery.objects.get()
    assert (delivery.address, delivery.kind) == ("ann@example.com", "to")


def test_the_sender_can_read_its_message_back(acme):
    created = acme.api.post(
        URL, message_payload(to=["Ann <ann@example.com>", "bob@example.com"]), format="json"
    )
    response = acme.api.get(f"{URL}/{created.json()['id']}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == created.json()["id"]
    assert body["subject"] == "Your code is 123456"
    assert [(r["address"], r["name"], r["status"]) for r in body["recipients"]] == [
        ("ann@example.com", "Ann", "queued"),
        ("bob@example.com", "", "queued"),
    ]


def test_another_client_cannot_see_the_message_nor_learn_that_it_exists(acme, globex):
    created = acme.api.post(URL, message_payload(), format="json")
    theirs = globex.api.get(f"{URL}/{created.json()['id']}")
    body = assert_problem(theirs, status=404, code="message_not_found")
    unknown = globex.api.get(f"{URL}/{uuid.uuid4()}")
    assert assert_problem(unknown, status=404, code="message_not_found") == body


def test_an_unknown_message_id_is_not_found(acme):
    response = acme.api.get(f"{URL}/{uuid.uuid4()}")
    assert_problem(response, status=404, code="message_not_found")
