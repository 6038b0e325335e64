"""The admin console with the Django test client on the real Postgres: pages render for staff
only, actions change exactly the rows they should, lists cost the same queries for 3 rows as
for 30, and an API key's secret is shown once."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import ApiKey
from accounts.services import api_key_hash
from deliveries.models import Attempt, Delivery, Event, Message, Suppression, Template
from deliveries.states import DeliveryStatus
from tests.support.ops import seed_message, statuses_of

pytestmark = pytest.mark.integration
S = DeliveryStatus

CHANGELISTS = [
    "admin:deliveries_message_changelist",
    "admin:deliveries_delivery_changelist",
    "admin:deliveries_attempt_changelist",
    "admin:deliveries_event_changelist",
    "admin:deliveries_suppression_changelist",
    "admin:deliveries_template_changelist",
    "admin:accounts_client_changelist",
    "admin:accounts_apikey_changelist",
]


def action(admin_client, changelist: str, name: str, objects) -> list[str]:
    response = admin_client.post(
        reverse(changelist),
        {"action": name, "_selected_action": [str(o.pk) for o in objects]},
        follow=True,
    )
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def test_every_page_redirects_an_anonymous_visitor_to_the_login(client, acme):
    message = seed_message(acme.client)
    for url in [
        reverse("admin:index"),
        reverse("admin:deliveries_dashboard"),
        reverse("admin:deliveries_message_change", args=[message.id]),
        *map(reverse, CHANGELISTS),
    ]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url


def test_a_logged_in_user_who_is_not_staff_sees_nothing(client, acme):
    User.objects.create_user("mallory", password="pw-mallory-123")
    client.login(username="mallory", password="pw-mallory-123")

    response = client.get(reverse("admin:deliveries_dashboard"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_every_changelist_and_the_dashboard_render_for_staff(admin_client, acme):
    seed_message(acme.client, status=S.DELIVERED)
    seed_message(acme.client, status=S.DEFERRED, priority="high", subject="Slow relay")
    for name in [*CHANGELISTS, "admin:deliveries_dashboard", "admin:index"]:
        response = admin_client.get(reverse(name))
        assert response.status_code == 200, name

    board = admin_client.get(reverse("admin:deliveries_dashboard")).content.decode()
    assert "Slow relay" in board  # the oldest waiting message
    assert "Mail dashboard" in admin_client.get(reverse("admin:index")).content.decode()


def test_the_message_page_shows_deliveries_attempts_headers_and_bodies(admin_client, acme):
    message = seed_message(
        acme.client, status=S.DEFERRED, recipients=("ann@example.com", "bob@example.com")
    )

    page = admin_client.get(reverse("admin:deliveries_message_change", args=[message.id]))

    html = page.content.decode()
    assert page.status_code == 200
    assert "ann@example.com" in html and "bob@example.com" in html
    assert html.count("451 4.7.1 try later") >= 2  # deliveries' and attempts' replies
    assert (
        "Message-ID" in html
        and message.message_id.replace("<", "&lt;").replace(">", "&gt;") in html
    )
    assert "Your verification code is 123456." in html
    # The HTML part is shown in a sandboxed frame, escaped into its srcdoc.
    assert 'sandbox=""' in html and 'srcdoc="&lt;p&gt;Your code is' in html
    assert 'name="_save"' not in html  # read-only


def test_the_message_list_costs_the_same_queries_for_three_rows_as_for_thirty(admin_client, acme):
    url = reverse("admin:deliveries_message_changelist")
    for _ in range(3):
        seed_message(acme.client, recipients=("a@example.com", "b@example.com"))
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(url).status_code == 200
    for _ in range(27):
        seed_message(acme.client, recipients=("a@example.com", "b@example.com"))
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(url)

    assert len(many) == len(few)
    assert response.context["cl"].result_count == 30
    assert all(m.recipient_count == 2 for m in response.context["cl"].result_list)


@pytest.mark.parametrize(
    "changelist",
    [
        "admin:deliveries_delivery_changelist",
        "admin:deliveries_attempt_changelist",
        "admin:deliveries_event_changelist",
    ],
)
def test_the_big_lists_do_not_query_per_row(admin_client, acme, changelist):
    seed_message(acme.client, status=S.DELIVERED)
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(reverse(changelist)).status_code == 200
    for _ in range(15):
        seed_message(acme.client, status=S.DELIVERED)
    with CaptureQueriesContext(connection) as many:
        assert admin_client.get(reverse(changelist)).status_code == 200

    assert len(many) == len(few)


def test_searching_messages_by_recipient_id_and_subject(admin_client, acme):
    ann = seed_message(acme.client, recipients=("Ann@Example.com",), subject="Welcome aboard")
    bob = seed_message(acme.client, recipients=("bob@example.com",), subject="Password reset")
    url = reverse("admin:deliveries_message_changelist")

    def found(term: str) -> set:
        return {m.id for m in admin_client.get(url, {"q": term}).context["cl"].result_list}

    assert found("ann@example.com") == {ann.id}
    assert found(str(bob.id)) == {bob.id}
    assert found(bob.message_id) == {bob.id}
    assert found("password") == {bob.id}


def test_retry_now_on_messages_retries_failed_and_deferred_and_reports_the_count(
    admin_client, acme
):
    failed = seed_message(acme.client, status=S.FAILED, age=timedelta(hours=2))
    deferred = seed_message(acme.client, status=S.DEFERRED)
    delivered = seed_message(acme.client, status=S.DELIVERED)
    delivered_before = Delivery.objects.get(message=delivered)

    notes = action(
        admin_client,
        "admin:deliveries_message_changelist",
        "retry_now",
        [failed, deferred, delivered],
    )

    assert notes == ["Queued for retry 2 deliveries of 2 message(s)."]
    assert statuses_of(failed) == statuses_of(deferred) == [S.QUEUED]
    delivered_after = Delivery.objects.get(message=delivered)
    assert delivered_after.status == S.DELIVERED
    assert delivered_after.updated_at == delivered_before.updated_at  # not even touched


def test_cancel_on_messages_cancels_only_what_is_not_sent(admin_client, acme):
    queued = seed_message(acme.client, recipients=("a@example.com", "b@example.com"))
    delivered = seed_message(acme.client, status=S.DELIVERED)

    notes = action(
        admin_client, "admin:deliveries_message_changelist", "cancel", [queued, delivered]
    )

    assert notes == ["Cancelled 2 deliveries of 1 message(s)."]
    assert statuses_of(queued) == [S.CANCELLED, S.CANCELLED]
    assert statuses_of(delivered) == [S.DELIVERED]


def test_an_action_with_nothing_to_do_says_so(admin_client, acme):
    delivered = seed_message(acme.client, status=S.DELIVERED)

    notes = action(admin_client, "admin:deliveries_message_changelist", "cancel", [delivered])

    assert notes == ["Nothing to do: no selected delivery is scheduled, queued or deferred."]


def test_resend_creates_new_messages_and_reports_how_many(admin_client, acme):
    first = seed_message(acme.client, status=S.DELIVERED)
    second = seed_message(acme.client, status=S.BOUNCED)

    notes = action(admin_client, "admin:deliveries_message_changelist", "resend", [first, second])

    assert notes == ["Accepted 2 new message(s), copies of the 2 selected."]
    copies = Message.objects.exclude(id__in=[first.id, second.id])
    assert sorted(m.metadata["resent_from"] for m in copies) == sorted(
        [str(first.id), str(second.id)]
    )
    assert statuses_of(first) == [S.DELIVERED] and statuses_of(second) == [S.BOUNCED]


def test_delivery_actions_change_only_the_selected_eligible_rows(admin_client, acme):
    message = seed_message(
        acme.client, recipients=("a@example.com", "b@example.com", "c@example.com")
    )
    a, b, _ = Delivery.objects.filter(message=message).order_by("id")

    notes = action(admin_client, "admin:deliveries_delivery_changelist", "cancel", [a, b])

    assert notes == ["Cancelled 2 deliveries of 1 message(s)."]
    assert statuses_of(message) == [S.CANCELLED, S.CANCELLED, S.QUEUED]


def test_attempts_and_events_are_read_only(admin_client, acme):
    message = seed_message(acme.client, status=S.DELIVERED)
    attempt = Attempt.objects.get(delivery__message=message)
    event = Event.objects.filter(message=message).first()

    for url in [
        reverse("admin:deliveries_attempt_change", args=[attempt.id]),
        reverse("admin:deliveries_event_change", args=[event.id]),
    ]:
        page = admin_client.get(url)
        assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert (
        admin_client.post(reverse("admin:deliveries_attempt_delete", args=[attempt.id])).status_code
        == 403
    )


def test_adding_a_suppression_stores_the_address_lower_cased(admin_client, acme):
    response = admin_client.post(
        reverse("admin:deliveries_suppression_add"),
        {"client": acme.client.id, "address": "Ann@Example.COM", "reason": "manual", "detail": ""},
    )

    assert response.status_code == 302
    assert list(Suppression.objects.values_list("address", "reason")) == [
        ("ann@example.com", "manual")
    ]


def test_a_new_api_key_shows_its_secret_once_and_stores_only_its_hash(admin_client, acme):
    response = admin_client.post(
        reverse("admin:accounts_apikey_add"), {"client": acme.client.id, "name": "billing"}
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = response.context["secret"]
    assert secret.startswith("mh_") and secret in response.content.decode()
    key = ApiKey.objects.get(name="billing")
    assert key.key_hash == api_key_hash(secret) and key.client == acme.client
    page = admin_client.get(reverse("admin:accounts_apikey_change", args=[key.id])).content.decode()
    assert secret not in page and key.prefix in page
    # The new key works against the API.
    api = acme.api.__class__()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert api.get("/api/v1/messages/00000000-0000-0000-0000-000000000000").status_code == 404


def test_revoking_keys_reports_how_many_were_active(admin_client, acme):
    active = ApiKey.objects.get(client=acme.client)
    notes = action(admin_client, "admin:accounts_apikey_changelist", "revoke", [active])
    again = action(admin_client, "admin:accounts_apikey_changelist", "revoke", [active])

    assert notes == ["Revoked 1 API key(s)."]
    assert again == ["Revoked 0 API key(s). 1 selected key(s) were already revoked."]
    assert acme.api.get("/api/v1/messages/00000000-0000-0000-0000-000000000000").status_code == 401


def test_a_template_that_does_not_compile_is_refused_naming_the_part(admin_client, acme):
    response = admin_client.post(
        reverse("admin:deliveries_template_add"),
        {"client": acme.client.id, "name": "welcome", "subject": "Hi {% if name %}", "text": "x"},
    )

    assert response.status_code == 200
    assert "syntax" in str(response.context["adminform"].form.errors["subject"]).lower()
    assert not Template.objects.exists()


def test_deleting_suppressions_takes_the_addresses_off_the_list(admin_client, acme):
    Suppression.objects.create(client=acme.client, address="ann@example.com")
    kept = Suppression.objects.create(client=acme.client, address="bob@example.com")
    [ann] = Suppression.objects.filter(address="ann@example.com")

    response = admin_client.post(
        reverse("admin:deliveries_suppression_changelist"),
        {"action": "delete_selected", "_selected_action": [ann.pk], "post": "yes"},
    )

    assert response.status_code == 302
    assert list(Suppression.objects.all()) == [kept]
