"""Webhook endpoints in the Django admin: created with the secret shown once, URLs refused as in
the API, why an endpoint was disabled and its request log in plain sight."""

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from webhooks.models import Endpoint, WebhookAttempt
from webhooks.services import endpoint_create

pytestmark = pytest.mark.integration

HOOK = "http://127.0.0.1:9/hooks"


@pytest.fixture
def loopback_allowed(settings):
    settings.MAILHUB_WEBHOOK_ALLOW_HTTP = True
    settings.MAILHUB_WEBHOOK_ALLOW_LOOPBACK = True


def form(acme, **overrides) -> dict:
    data = {
        "client": acme.client.id,
        "url": HOOK,
        "event_types": ["delivered", "bounced"],
        "description": "",
        "enabled": "on",
    }
    data.update(overrides)
    return data


def test_an_endpoint_created_in_the_admin_shows_its_secret_once(
    admin_client, acme, loopback_allowed
):
    response = admin_client.post(reverse("admin:webhooks_endpoint_add"), form(acme), follow=True)

    assert response.status_code == 200
    endpoint = Endpoint.objects.get()
    assert (endpoint.url, endpoint.event_types) == (HOOK, ["delivered", "bounced"])
    notes = [str(m) for m in get_messages(response.wsgi_request)]
    assert any(endpoint.secret in note for note in notes), notes
    page = admin_client.get(reverse("admin:webhooks_endpoint_change", args=[endpoint.id]))
    assert page.status_code == 200
    assert endpoint.secret not in page.content.decode()


def test_the_admin_refuses_a_url_that_resolves_to_loopback(admin_client, acme):
    response = admin_client.post(
        reverse("admin:webhooks_endpoint_add"), form(acme, url="https://127.0.0.1/hooks")
    )

    assert response.status_code == 200  # the form again, with the error
    assert "loopback" in response.content.decode()
    assert not Endpoint.objects.exists()


def test_the_admin_shows_why_an_endpoint_was_disabled_and_its_last_requests(
    admin_client, acme, loopback_allowed
):
    endpoint, _ = endpoint_create(client=acme.client, url=HOOK)
    reason = "Disabled automatically: all 93 requests since 2026-01-01 00:00:00 UTC failed."
    Endpoint.objects.filter(id=endpoint.id).update(
        enabled=False, disabled_reason=reason, disabled_at=timezone.now()
    )
    WebhookAttempt.objects.create(
        endpoint=endpoint,
        started_at=timezone.now() - timedelta(minutes=1),
        duration_ms=5003,
        status_code=None,
        succeeded=False,
        error="timed out after 5 s",
    )
    WebhookAttempt.objects.create(
        endpoint=endpoint,
        started_at=timezone.now(),
        duration_ms=12,
        status_code=503,
        succeeded=False,
        error="HTTP 503",
        response_excerpt="upstream unavailable",
    )

    listing = admin_client.get(reverse("admin:webhooks_endpoint_changelist")).content.decode()
    page = admin_client.get(
        reverse("admin:webhooks_endpoint_change", args=[endpoint.id])
    ).content.decode()
    attempts = admin_client.get(
        reverse("admin:webhooks_webhookattempt_changelist") + f"?endpoint__id__exact={endpoint.id}"
    )

    assert reason in listing and reason in page
    assert "timed out after 5 s" in page and "upstream unavailable" in page and "503" in page
    assert attempts.status_code == 200 and "upstream unavailable" in attempts.content.decode()


def test_the_admin_actions_disable_and_enable_endpoints(admin_client, acme, loopback_allowed):
    endpoint, _ = endpoint_create(client=acme.client, url=HOOK)
    Endpoint.objects.filter(id=endpoint.id).update(consecutive_failures=5)
    changelist = reverse("admin:webhooks_endpoint_changelist")

    admin_client.post(changelist, {"action": "disable", "_selected_action": [endpoint.id]})
    endpoint.refresh_from_db()
    assert endpoint.enabled is False and "admin" in endpoint.disabled_reason

    admin_client.post(changelist, {"action": "enable", "_selected_action": [endpoint.id]})
    endpoint.refresh_from_db()
    assert endpoint.enabled is True and endpoint.consecutive_failures == 0
