"""/api/v1/webhooks and /api/v1/events against the real Postgres: per-client endpoints with a
secret shown once, URLs a webhook may not call refused, and a filterable, cursor-paged event log
that never shows one client another's events."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from deliveries.models import Delivery, Event
from deliveries.services import deliveries_transition
from deliveries.states import DeliveryStatus
from tests.builders import message_payload
from tests.integration.test_api_input import assert_problem
from webhooks.models import Endpoint

pytestmark = pytest.mark.integration

URL = "/api/v1/webhooks"
HOOK = "http://127.0.0.1:9/hooks/mailhub"


@pytest.fixture
def loopback_allowed(settings):
    settings.MAILHUB_WEBHOOK_ALLOW_HTTP = True
    settings.MAILHUB_WEBHOOK_ALLOW_LOOPBACK = True


def create(actor, **overrides):
    response = actor.api.post(URL, {"url": HOOK, **overrides}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


# -- endpoints -------------------------------------------------------------------------------


def test_creating_a_webhook_shows_its_secret_once(acme, loopback_allowed):
    created = create(acme, event_types=["failed", "delivered"], description="shop")

    assert created["secret"].startswith("whsec_")
    assert created["url"] == HOOK and created["enabled"] is True
    assert created["event_types"] == ["delivered", "failed"]  # in the documented order
    assert Endpoint.objects.get(id=created["id"]).secret == created["secret"]
    for response in (
        acme.api.get(f"{URL}/{created['id']}"),
        acme.api.get(URL),
        acme.api.patch(f"{URL}/{created['id']}", {"description": "x"}, format="json"),
    ):
        assert response.status_code == 200
        assert created["secret"] not in response.content.decode()


def test_a_webhook_without_event_types_receives_every_type(acme, loopback_allowed):
    created = create(acme)
    assert created["event_types"] == [value for value, _ in Event.Type.choices]


def test_another_client_can_neither_see_nor_change_nor_delete_a_webhook(
    acme, globex, loopback_allowed
):
    created = create(acme)
    detail = f"{URL}/{created['id']}"

    assert globex.api.get(URL).json()["results"] == []
    assert_problem(globex.api.get(detail), status=404, code="webhook_not_found")
    assert_problem(
        globex.api.patch(detail, {"enabled": False}, format="json"),
        status=404,
        code="webhook_not_found",
    )
    assert_problem(globex.api.delete(detail), status=404, code="webhook_not_found")
    assert Endpoint.objects.get(id=created["id"]).enabled is True


def test_a_webhook_can_be_changed_and_deleted(acme, loopback_allowed):
    created = create(acme)
    detail = f"{URL}/{created['id']}"

    changed = acme.api.patch(
        detail,
        {"url": "http://127.0.0.1:10/other", "event_types": ["bounced"], "enabled": False},
        format="json",
    ).json()
    assert changed["url"] == "http://127.0.0.1:10/other"
    assert changed["event_types"] == ["bounced"]
    assert changed["enabled"] is False and changed["disabled_reason"]

    assert acme.api.delete(detail).status_code == 204
    assert not Endpoint.objects.filter(id=created["id"]).exists()
    assert_problem(acme.api.get(detail), status=404, code="webhook_not_found")


def test_enabling_a_webhook_again_forgets_its_failures(acme, loopback_allowed):
    created = create(acme)
    Endpoint.objects.filter(id=created["id"]).update(
        enabled=False,
        disabled_at=timezone.now(),
        disabled_reason="Disabled automatically: ...",
        consecutive_failures=40,
        failing_since=timezone.now() - timedelta(days=1),
        retry_at=timezone.now() + timedelta(hours=1),
    )

    enabled = acme.api.patch(f"{URL}/{created['id']}", {"enabled": True}, format="json").json()

    assert enabled["enabled"] is True
    assert enabled["disabled_reason"] == "" and enabled["disabled_at"] is None
    assert enabled["consecutive_failures"] == 0
    assert enabled["failing_since"] is None and enabled["retry_at"] is None


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hooks",
        "https://localhost:8443/hooks",
        "https://[::1]/hooks",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.7/hooks",
        "https://192.168.0.1/hooks",
    ],
)
def test_a_webhook_to_a_loopback_private_or_metadata_address_is_refused(acme, url):
    response = acme.api.post(URL, {"url": url}, format="json")

    body = assert_problem(response, status=400, code="webhook_url_refused")
    assert "resolves to" in body["detail"]
    assert body["errors"][0]["field"] == "url"
    assert Endpoint.objects.count() == 0


def test_a_plain_http_webhook_is_refused_unless_allowed(acme):
    response = acme.api.post(URL, {"url": "http://hooks.example.com/in"}, format="json")
    assert "https" in assert_problem(response, status=400, code="webhook_url_refused")["detail"]


def test_changing_a_webhook_to_a_forbidden_url_is_refused_and_changes_nothing(
    acme, loopback_allowed, settings
):
    created = create(acme)
    settings.MAILHUB_WEBHOOK_ALLOW_LOOPBACK = False

    response = acme.api.patch(
        f"{URL}/{created['id']}", {"url": "http://127.0.0.2/x"}, format="json"
    )

    assert_problem(response, status=400, code="webhook_url_refused")
    assert Endpoint.objects.get(id=created["id"]).url == HOOK


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1:9/hooks\r\nX-Injected: 1", "webhook_url_refused"),
        ("http://127.0.0.1:9/hooks?a=1\nb", "webhook_url_refused"),
        ("http://127.0.0.1:9/ho\toks", "webhook_url_refused"),
        ("http://127.0.0.1:9/hooks\u2028", "webhook_url_refused"),
        ("http://127.0.0.1:0/hooks", "webhook_url_refused"),
        ("http://127.0.0.1:65536/hooks", "webhook_url_refused"),
        ("http://127.0.0.1:/hooks", "webhook_url_refused"),
        (" http://127.0.0.1:9/hooks", "webhook_url_refused"),
        ("http://127.0.0.1:9/hooks\n", "webhook_url_refused"),
        ("http://user\r\n:pw@127.0.0.1:9/hooks", "webhook_url_refused"),
        ("ftp://127.0.0.1:9/hooks", "webhook_url_refused"),
        ("http://127.0.0.1:9/hooks\x00", "validation_error"),  # DRF's own check, first
        ("http://127.0.0.1:9/" + "x" * 2000, "validation_error"),  # max_length
    ],
)
def test_a_webhook_url_with_a_control_character_white_space_or_a_bad_port_is_refused(
    acme, loopback_allowed, url, code
):
    response = acme.api.post(URL, {"url": url}, format="json")

    body = assert_problem(response, status=400, code=code)
    assert body["errors"][0]["field"] == "url"
    assert "\n" not in body["detail"] and "\r" not in body["detail"]
    assert Endpoint.objects.count() == 0


def test_changing_a_webhook_to_a_url_with_a_line_break_changes_nothing(acme, loopback_allowed):
    created = create(acme)

    response = acme.api.patch(
        f"{URL}/{created['id']}", {"url": HOOK + "\r\nX-Injected: 1"}, format="json"
    )

    assert_problem(response, status=400, code="webhook_url_refused")
    assert Endpoint.objects.get(id=created["id"]).url == HOOK


@pytest.mark.parametrize(
    ("payload", "field", "code"),
    [
        ({}, "url", "required"),
        ({"url": HOOK, "event_types": []}, "event_types", "empty"),
        ({"url": HOOK, "event_types": ["opened"]}, "event_types[0]", "invalid_choice"),
        ({"url": HOOK, "secret": "mine"}, "secret", "unknown_field"),
        ({"url": HOOK, "enabled": "maybe"}, "enabled", "invalid"),
    ],
)
def test_invalid_webhook_input_is_refused_field_by_field(
    acme, loopback_allowed, payload, field, code
):
    body = assert_problem(
        acme.api.post(URL, payload, format="json"), status=400, code="validation_error"
    )
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in body["errors"]
    ], body["errors"]


def test_the_webhook_api_needs_an_api_key(db):
    from rest_framework.test import APIClient

    assert APIClient().get(URL).status_code == 401


# -- the event log ---------------------------------------------------------------------------


def send(actor, **overrides) -> uuid.UUID:
    response = actor.api.post("/api/v1/messages", message_payload(**overrides), format="json")
    assert response.status_code == 202, response.content
    return uuid.UUID(response.json()["id"])


def events(actor, **params) -> dict:
    response = actor.api.get("/api/v1/events", params)
    assert response.status_code == 200, response.content
    return response.json()


def test_the_event_log_lists_a_clients_events_with_their_details(acme, globex):
    message_id = send(acme, to=["ann@example.com", "bob@example.com"])
    send(globex, to=["eve@example.com"])

    listed = events(acme)["results"]

    assert sorted(e["recipient"] for e in listed) == ["ann@example.com", "bob@example.com"]
    event = listed[0]
    assert set(event) == {
        "id",
        "type",
        "created_at",
        "message_id",
        "recipient",
        "attempt",
        "smtp_code",
        "enhanced_code",
        "reply",
        "next_attempt_at",
        "test_mode",
        "tags",
        "metadata",
    }
    assert event["type"] == "accepted" and event["message_id"] == str(message_id)
    assert event["tags"] == [] and event["metadata"] == {} and event["test_mode"] is False
    assert [e["recipient"] for e in events(globex)["results"]] == ["eve@example.com"]


def test_the_event_log_filters_by_type_message_recipient_and_time(acme):
    first = send(acme, to=["ann@example.com", "bob@example.com"])
    second = send(acme, to=["Ann@Example.com"])
    bob = Delivery.objects.get(message_id=first, address="bob@example.com")
    deliveries_transition(delivery_ids=[bob.id], to=DeliveryStatus.CANCELLED)
    cancelled_at = Event.objects.get(type="cancelled").created_at

    def recipients(**params):
        return sorted((e["type"], e["recipient"]) for e in events(acme, **params)["results"])

    assert recipients(type="cancelled") == [("cancelled", "bob@example.com")]
    assert len(recipients(type="cancelled,accepted")) == 4
    assert recipients(message=str(second)) == [("accepted", "Ann@Example.com")]
    assert recipients(recipient="ANN@example.com") == [
        ("accepted", "Ann@Example.com"),
        ("accepted", "ann@example.com"),
    ]
    assert recipients(created_after=cancelled_at.isoformat()) == [("cancelled", "bob@example.com")]
    assert ("cancelled", "bob@example.com") not in recipients(
        created_before=cancelled_at.isoformat()
    )


def test_the_event_log_pages_through_every_event_once_in_both_orders(acme):
    # 7 messages of 3 recipients: events written by one transaction share their time, so the
    # pages must split ties correctly.
    for _ in range(7):
        send(acme, to=["a@example.com", "b@example.com", "c@example.com"])
    every = set(Event.objects.values_list("id", flat=True))

    for order in ("newest", "oldest"):
        seen, times, page = [], [], events(acme, limit=4, order=order)
        while True:
            seen += [e["id"] for e in page["results"]]
            times += [e["created_at"] for e in page["results"]]
            if page["next"] is None:
                break
            page = acme.api.get(page["next"]).json()
        assert len(seen) == len(every) == 21
        assert {uuid.UUID(i) for i in seen} == every
        assert times == sorted(times, reverse=order == "newest")


def test_a_cursor_of_one_client_shows_another_nothing_of_the_first(acme, globex):
    for _ in range(3):
        send(acme)
    next_link = events(acme, limit=1)["next"]

    assert globex.api.get(next_link).json()["results"] == []


@pytest.mark.parametrize(
    ("params", "field", "code"),
    [
        ({"cursor": "not-a-cursor"}, "cursor", "invalid_cursor"),
        ({"type": "opened"}, "type[0]", "invalid_choice"),
        ({"message": "123"}, "message", "invalid"),
        ({"limit": "1000"}, "limit", "max_value"),
        ({"created_after": "yesterday"}, "created_after", "invalid"),
        ({"order": "random"}, "order", "invalid_choice"),
        ({"colour": "blue"}, "colour", "unknown_field"),
    ],
)
def test_invalid_event_log_parameters_are_refused(acme, params, field, code):
    body = assert_problem(
        acme.api.get("/api/v1/events", params), status=400, code="validation_error"
    )
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in body["errors"]
    ], body["errors"]
