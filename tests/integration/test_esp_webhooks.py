"""ESP tracking webhooks (/esp/<esp>/tracking/): each ESP's documented sample, signed as that
ESP signs it, posted to the real endpoint, bounces or suppresses the right delivery; an unsigned
or wrongly signed one is refused and changes nothing; hostile payloads are 400s, never 500s.

Amazon SES reports through SNS, whose message signatures anymail does not verify: its proof of
origin is the basic auth (``MAILHUB_ESP_WEBHOOK_SECRET``) in the URL given to SNS. SendGrid's
events are signed (ECDSA, with a key pair made for these tests), Mailgun's too (HMAC).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from string import Template

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from deliveries.models import Delivery, Event, Suppression
from deliveries.states import DeliveryStatus
from tests.support.ops import seed_message

pytestmark = pytest.mark.integration
S = DeliveryStatus
DATA = Path(__file__).resolve().parents[1] / "data" / "esp"
SES_ID = "0100018c5ab7c1d2-6f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b-000000"
AUTH = "Basic " + base64.b64encode(settings.MAILHUB_ESP_WEBHOOK_SECRET.encode()).decode()
WRONG_AUTH = "Basic " + base64.b64encode(b"esp:not-the-secret").decode()


def sample(name: str, **values: str) -> str:
    return Template((DATA / name).read_text()).substitute(values)


def delivered(client, *, relay_id: str = "", recipients=("ann@example.com",)) -> list[Delivery]:
    """A message delivered to ``recipients`` through one SMTP transaction whose 250 reply gave
    ``relay_id`` (what the worker records, ``test_relay_message_id``)."""
    message = seed_message(client, status=S.DELIVERED, recipients=tuple(recipients))
    message.deliveries.update(relay_message_id=relay_id)
    return list(message.deliveries.order_by("id"))


def status_of(delivery: Delivery) -> str:
    return Delivery.objects.get(id=delivery.id).status


# -- Amazon SES, through SNS -------------------------------------------------------------------


def sns(ses_event: str) -> str:
    envelope = json.loads((DATA / "sns_notification.json").read_text())
    envelope["Message"] = ses_event
    return json.dumps(envelope)


def post_sns(client, body: str, *, auth: str | None = AUTH, message_id: str | None = None):
    headers = {
        "HTTP_X_AMZ_SNS_MESSAGE_TYPE": "Notification",
        "HTTP_X_AMZ_SNS_MESSAGE_ID": message_id or "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
    }
    if auth:
        headers["HTTP_AUTHORIZATION"] = auth
    return client.post(
        "/esp/amazon_ses/tracking/", body, content_type="text/plain; charset=UTF-8", **headers
    )


def ses_event(name: str, delivery: Delivery, *, relay_id: str = SES_ID) -> str:
    return sample(
        name,
        relay_id=relay_id,
        recipient=delivery.address,
        message_id=delivery.message.message_id,
    )


def test_an_ses_bounce_bounces_the_delivery_and_suppresses_the_address(client, acme):
    (ann,) = delivered(acme.client, relay_id=SES_ID)

    response = post_sns(client, sns(ses_event("ses_bounce.json", ann)))

    assert response.status_code == 200
    ann.refresh_from_db()
    assert (ann.status, ann.last_code, ann.last_enhanced_code) == (S.BOUNCED, 550, "5.1.1")
    assert "Amazon SES reported bounced" in ann.last_reply
    assert "smtp; 550 5.1.1 user unknown" in ann.last_reply
    suppression = Suppression.objects.get(client=acme.client, address="ann@example.com")
    assert suppression.reason == Suppression.Reason.HARD_BOUNCE
    assert Event.objects.filter(delivery=ann, type=Event.Type.BOUNCED).count() == 1


def test_an_ses_bounce_whose_diagnostic_holds_a_nul_and_a_surrogate_is_recorded_without_them(
    client, acme
):
    (ann,) = delivered(acme.client, relay_id=SES_ID)
    event = json.loads(ses_event("ses_bounce.json", ann))
    event["bounce"]["bouncedRecipients"][0]["diagnosticCode"] = "smtp; 550\x00 5.1.1\ud800 gone"

    assert post_sns(client, sns(json.dumps(event))).status_code == 200

    ann.refresh_from_db()
    assert ann.status == S.BOUNCED
    assert ann.last_reply.endswith("smtp; 550 5.1.1 gone")


def test_the_endpoint_takes_posts_without_a_csrf_token(acme):
    """An ESP has no session and no token: the endpoint is exempt (anymail's views are)."""
    (ann,) = delivered(acme.client, relay_id=SES_ID)

    response = post_sns(Client(enforce_csrf_checks=True), sns(ses_event("ses_bounce.json", ann)))

    assert response.status_code == 200
    assert status_of(ann) == S.BOUNCED


def test_the_same_ses_bounce_twice_is_recorded_once(client, acme):
    (ann,) = delivered(acme.client, relay_id=SES_ID)
    body = sns(ses_event("ses_bounce.json", ann))

    assert post_sns(client, body).status_code == 200
    assert post_sns(client, body).status_code == 200

    assert Event.objects.filter(delivery=ann, type=Event.Type.BOUNCED).count() == 1


def test_an_ses_complaint_suppresses_the_address_and_leaves_it_delivered(client, acme):
    (ann,) = delivered(acme.client, relay_id=SES_ID)

    assert post_sns(client, sns(ses_event("ses_complaint.json", ann))).status_code == 200

    assert status_of(ann) == S.DELIVERED
    assert Event.objects.filter(delivery=ann, type=Event.Type.COMPLAINED).count() == 1
    suppression = Suppression.objects.get(client=acme.client, address="ann@example.com")
    assert suppression.reason == Suppression.Reason.COMPLAINT


def test_a_transient_ses_bounce_changes_nothing(client, acme):
    (ann,) = delivered(acme.client, relay_id=SES_ID)
    event = json.loads(ses_event("ses_bounce.json", ann))
    event["bounce"]["bounceType"] = "Transient"

    assert post_sns(client, sns(json.dumps(event))).status_code == 200

    assert status_of(ann) == S.DELIVERED
    assert not Suppression.objects.exists()


def test_an_ses_event_is_matched_by_the_message_id_header_when_no_relay_id_was_recorded(
    client, acme
):
    (ann,) = delivered(acme.client, relay_id="")

    response = post_sns(client, sns(ses_event("ses_bounce.json", ann, relay_id="0100-unknown")))

    assert response.status_code == 200
    assert status_of(ann) == S.BOUNCED


def test_an_ses_event_without_basic_auth_is_refused_and_changes_nothing(client, acme):
    (ann,) = delivered(acme.client, relay_id=SES_ID)
    body = sns(ses_event("ses_bounce.json", ann))

    assert post_sns(client, body, auth=None).status_code == 401  # SNS then retries with it
    assert post_sns(client, body, auth=WRONG_AUTH).status_code == 403

    assert status_of(ann) == S.DELIVERED
    assert not Suppression.objects.exists()


def test_an_sns_envelope_whose_headers_disagree_with_its_body_is_refused(client, acme):
    (ann,) = delivered(acme.client, relay_id=SES_ID)

    response = post_sns(client, sns(ses_event("ses_bounce.json", ann)), message_id="another")

    assert response.status_code == 403
    assert status_of(ann) == S.DELIVERED


# -- SendGrid ---------------------------------------------------------------------------------


def _sendgrid_test_key() -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(
        (DATA / "sendgrid_test_key.pem").read_bytes(), password=None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


SENDGRID_KEY = _sendgrid_test_key()


def post_sendgrid(client, body: str, *, key=SENDGRID_KEY, signed: bool = True, auth=AUTH):
    headers = {"HTTP_AUTHORIZATION": auth}
    if signed:
        timestamp = str(int(time.time()))
        signature = key.sign(timestamp.encode() + body.encode(), ec.ECDSA(hashes.SHA256()))
        headers["HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE"] = base64.b64encode(
            signature
        ).decode()
        headers["HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP"] = timestamp
    return client.post("/esp/sendgrid/tracking/", body, content_type="application/json", **headers)


def sendgrid_events(delivery: Delivery, *kinds: str, relay_id: str = "nhIMmON9SFOPcT0ii4nt2A"):
    """The documented events of these kinds ("bounce", "blocked", "spamreport", "delivered")."""
    events = json.loads(
        sample(
            "sendgrid_events.json",
            relay_id=relay_id,
            recipient=delivery.address,
            message_id=delivery.message.message_id,
        )
    )
    by_kind = {event.get("type", event["event"]): event for event in events}
    return json.dumps([by_kind[kind] for kind in kinds])


def test_a_signed_sendgrid_bounce_bounces_the_delivery(client, acme):
    (ann,) = delivered(acme.client, relay_id="nhIMmON9SFOPcT0ii4nt2A")

    response = post_sendgrid(client, sendgrid_events(ann, "bounce"))

    assert response.status_code == 200
    ann.refresh_from_db()
    assert (ann.status, ann.last_enhanced_code) == (S.BOUNCED, "5.1.1")
    assert Suppression.objects.get(client=acme.client, address="ann@example.com").reason == (
        Suppression.Reason.HARD_BOUNCE
    )


def test_sendgrid_blocked_and_delivered_change_nothing_and_a_spamreport_is_a_complaint(
    client, acme
):
    (ann,) = delivered(acme.client, relay_id="nhIMmON9SFOPcT0ii4nt2A")

    response = post_sendgrid(client, sendgrid_events(ann, "blocked", "delivered", "spamreport"))

    assert response.status_code == 200
    assert status_of(ann) == S.DELIVERED
    assert (
        list(Event.objects.filter(delivery=ann).values_list("type", flat=True)).count(
            Event.Type.COMPLAINED
        )
        == 1
    )
    assert Suppression.objects.get(address="ann@example.com").reason == (
        Suppression.Reason.COMPLAINT
    )


def test_a_sendgrid_event_is_matched_by_its_smtp_id_when_no_relay_id_was_recorded(client, acme):
    (ann,) = delivered(acme.client, relay_id="")

    assert post_sendgrid(client, sendgrid_events(ann, "bounce")).status_code == 200

    assert status_of(ann) == S.BOUNCED


@pytest.mark.parametrize(
    "how", ["unsigned", "signed by another key", "body changed after signing", "no basic auth"]
)
def test_a_sendgrid_event_not_signed_by_the_configured_key_is_refused(client, acme, how):
    (ann,) = delivered(acme.client, relay_id="nhIMmON9SFOPcT0ii4nt2A")
    body = sendgrid_events(ann, "bounce")
    if how == "unsigned":
        response = post_sendgrid(client, body, signed=False)
    elif how == "signed by another key":
        response = post_sendgrid(client, body, key=ec.generate_private_key(ec.SECP256R1()))
    elif how == "no basic auth":
        response = post_sendgrid(client, body, auth="")
    else:
        timestamp = "1700000000"
        signature = SENDGRID_KEY.sign(timestamp.encode() + body.encode(), ec.ECDSA(hashes.SHA256()))
        response = client.post(
            "/esp/sendgrid/tracking/",
            body.replace("bounce", "spamreport", 1),
            content_type="application/json",
            HTTP_AUTHORIZATION=AUTH,
            HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE=base64.b64encode(signature).decode(),
            HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP=timestamp,
        )

    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    assert status_of(ann) == S.DELIVERED
    assert not Suppression.objects.exists()
    assert set(Event.objects.filter(delivery=ann).values_list("type", flat=True)) == {
        Event.Type.ACCEPTED,
        Event.Type.DELIVERED,
    }


# -- correlation and tenancy ------------------------------------------------------------------


def test_an_event_affects_only_the_delivery_our_records_name(client, acme, globex):
    """acme and globex both sent to ann; the relay reports on acme's message: globex's delivery,
    suppressions and events are untouched, whatever else the payload claims."""
    (acme_ann,) = delivered(acme.client, relay_id=SES_ID)
    (globex_ann,) = delivered(globex.client, relay_id="0100018c5ab7c1d2-globex")
    event = json.loads(ses_event("ses_bounce.json", acme_ann))
    # Claims in the payload that name globex's message are not how a delivery is found.
    event["mail"]["commonHeaders"]["messageId"] = globex_ann.message.message_id
    event["mail"]["headers"].append(
        {"name": "X-Metadata", "value": json.dumps({"client": "globex"})}
    )

    assert post_sns(client, sns(json.dumps(event))).status_code == 200

    assert status_of(acme_ann) == S.BOUNCED
    assert status_of(globex_ann) == S.DELIVERED
    assert not Suppression.objects.filter(client=globex.client).exists()
    assert Suppression.objects.filter(client=acme.client).count() == 1


def test_recipients_of_one_transaction_share_the_relay_id_and_only_the_named_one_bounces(
    client, acme
):
    ann, bob = delivered(
        acme.client, relay_id=SES_ID, recipients=("ann@example.com", "bob@example.com")
    )

    assert post_sns(client, sns(ses_event("ses_bounce.json", bob))).status_code == 200

    assert (status_of(ann), status_of(bob)) == (S.DELIVERED, S.BOUNCED)


def test_an_event_for_a_recipient_the_relay_id_does_not_have_changes_nothing(client, acme):
    (ann,) = delivered(acme.client, relay_id=SES_ID)
    event = json.loads(ses_event("ses_bounce.json", ann))
    event["bounce"]["bouncedRecipients"][0]["emailAddress"] = "mallory@example.com"
    event["mail"]["commonHeaders"]["messageId"] = "<not-ours@example.com>"

    assert post_sns(client, sns(json.dumps(event))).status_code == 200

    assert status_of(ann) == S.DELIVERED
    assert not Suppression.objects.exists()


def test_an_event_for_an_unknown_id_is_dropped(client, acme):
    (ann,) = delivered(acme.client, relay_id=SES_ID)
    event = json.loads(ses_event("ses_bounce.json", ann, relay_id="0100-not-ours"))
    event["mail"]["commonHeaders"]["messageId"] = "<0123@elsewhere.example>"

    assert post_sns(client, sns(json.dumps(event))).status_code == 200

    assert status_of(ann) == S.DELIVERED


# -- Mailgun and Postmark ---------------------------------------------------------------------


def mailgun_body(delivery: Delivery, *, key: str = settings.MAILHUB_ESP_MAILGUN_SIGNING_KEY):
    event = json.loads(
        sample(
            "mailgun_failed.json",
            relay_id="",
            recipient=delivery.address,
            # Mailgun gives the Message-ID without its angle brackets.
            message_id=delivery.message.message_id.strip("<>"),
        )
    )
    timestamp, token = str(int(time.time())), "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    event["signature"] = {"timestamp": timestamp, "token": token, "signature": signature}
    return json.dumps(event)


def test_a_signed_mailgun_failure_bounces_the_delivery_its_message_id_names(client, acme):
    (ann,) = delivered(acme.client)  # Mailgun's 250 reply gives no id

    response = client.post(
        "/esp/mailgun/tracking/",
        mailgun_body(ann),
        content_type="application/json",
        HTTP_AUTHORIZATION=AUTH,
    )

    assert response.status_code == 200
    assert status_of(ann) == S.BOUNCED


def test_a_mailgun_event_signed_with_another_key_is_refused(client, acme):
    (ann,) = delivered(acme.client)

    response = client.post(
        "/esp/mailgun/tracking/",
        mailgun_body(ann, key="another-key"),
        content_type="application/json",
        HTTP_AUTHORIZATION=AUTH,
    )

    assert response.status_code == 403
    assert status_of(ann) == S.DELIVERED


def test_a_postmark_hard_bounce_with_basic_auth_bounces_the_delivery(client, acme):
    relay_id = "883953f4-6105-42a2-a16a-77a8eac79483"
    (ann,) = delivered(acme.client, relay_id=relay_id)
    body = sample("postmark_bounce.json", relay_id=relay_id, recipient=ann.address, message_id="")

    refused = client.post("/esp/postmark/tracking/", body, content_type="application/json")
    assert refused.status_code == 403
    assert status_of(ann) == S.DELIVERED

    response = client.post(
        "/esp/postmark/tracking/", body, content_type="application/json", HTTP_AUTHORIZATION=AUTH
    )
    assert response.status_code == 200
    assert status_of(ann) == S.BOUNCED


# -- hostile payloads -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("not json", 400),
        ("[" * 100_000 + "]" * 100_000, 400),  # nested past the parser's recursion limit
        (json.dumps([1, 2, 3]), 400),
        (json.dumps({"event": "bounce"}), 400),
        (json.dumps([{"event": "bounce", "email": "ann@example.com", "timestamp": "x"}]), 400),
        ("\ud800".encode("utf-8", "surrogatepass").decode("latin-1"), 400),
        # Readable, but naming nothing Mailhub knows: accepted (the ESP stops retrying), ignored.
        (json.dumps([{"event": 5, "email": ["x"]}]), 200),
        (json.dumps([{"event": "bounce", "email": {"a": 1}, "sg_message_id": 7}]), 200),
    ],
)
def test_a_hostile_sendgrid_payload_is_a_400_and_never_a_500(client, acme, body, status):
    (ann,) = delivered(acme.client, relay_id="nhIMmON9SFOPcT0ii4nt2A")

    response = post_sendgrid(client, body)

    assert response.status_code == status, response.content[:300]
    assert status_of(ann) == S.DELIVERED


@pytest.mark.parametrize(
    "recipient",
    [
        "ann@example.com\r\nX: y",
        "Ann <ann@example.com>",
        "ann@example.com\u2028",
        "ann@example.com\x00",
    ],
)
def test_an_event_whose_recipient_is_not_a_bare_address_changes_nothing(client, acme, recipient):
    (ann,) = delivered(acme.client, relay_id="nhIMmON9SFOPcT0ii4nt2A")
    events = json.loads(sendgrid_events(ann, "bounce"))
    events[0]["email"] = recipient

    assert post_sendgrid(client, json.dumps(events)).status_code == 200

    assert status_of(ann) == S.DELIVERED
    assert not Suppression.objects.exists()


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        json.dumps({"notificationType": "Bounce"}),
        json.dumps({"notificationType": "Bounce", "bounce": {"bounceType": "Permanent"}}),
        json.dumps({"notificationType": "Bounce", "bounce": [], "mail": 5}),
        json.dumps({"notificationType": 5}),
        json.dumps({"notificationType": "Received", "mail": {}}),
        json.dumps({"notificationType": "Complaint", "complaint": {"complainedRecipients": [7]}}),
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_a_hostile_ses_payload_is_a_400_and_never_a_500(client, acme, message):
    (ann,) = delivered(acme.client, relay_id=SES_ID)

    response = post_sns(client, sns(message))

    assert response.status_code == 400, response.content[:300]
    assert status_of(ann) == S.DELIVERED


def test_a_hostile_sns_envelope_is_a_400(client):
    for body in ("[]", "5", "{" * 50_000, json.dumps({"Type": ["Notification"]})):
        response = post_sns(client, body)
        assert response.status_code in (400, 403), (body[:40], response.status_code)


def test_a_body_over_the_size_limit_is_a_400(client):
    body = json.dumps([{"event": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE}])

    assert post_sendgrid(client, body).status_code == 400


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["event", "email", "type", "sg_message_id", "smtp-id", "reason", "x"]),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=JSON)
def test_any_signed_json_is_answered_200_or_400(client, acme, payload):
    response = post_sendgrid(client, json.dumps(payload))

    assert response.status_code in (200, 400), response.content[:300]
