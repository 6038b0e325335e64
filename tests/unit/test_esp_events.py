"""What an ESP's normalized event asks of Mailhub (api.esp_events.report_of), whatever types its
payload's fields hold."""

import re

import pytest
from anymail.signals import AnymailTrackingEvent, EventType
from hypothesis import given
from hypothesis import strategies as st

from api.esp_events import Action, report_of
from deliveries.relay_ids import RELAY_ID

SES_ID = "0100018c5ab7c1d2-6f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b-000000"


def event(event_type, esp_event=None, **fields):
    fields.setdefault("recipient", "ann@example.com")
    return AnymailTrackingEvent(event_type=event_type, esp_event=esp_event or {}, **fields)


def test_a_permanent_ses_bounce_is_a_bounce_with_its_codes_and_ids():
    report = report_of(
        event(
            EventType.BOUNCED,
            {
                "bounce": {"bounceType": "Permanent"},
                "mail": {"commonHeaders": {"messageId": "<a@b>"}},
            },
            message_id=SES_ID,
            mta_response="smtp; 550 5.1.1 user unknown",
            description="Permanent: General",
        ),
        "Amazon SES",
    )

    assert report is not None
    assert (report.action, report.smtp_code, report.enhanced_code) == (Action.BOUNCE, 550, "5.1.1")
    assert (report.relay_ids, report.message_ids) == ((SES_ID,), ("<a@b>",))
    assert report.detail.startswith("Amazon SES reported bounced: Permanent: General")


@pytest.mark.parametrize(
    ("esp", "esp_event"),
    [
        ("Amazon SES", {"bounce": {"bounceType": "Transient"}}),
        ("Amazon SES", {"bounce": "Permanent"}),
        ("SendGrid", {"type": "blocked"}),
        ("Postmark", {"Type": "SoftBounce"}),
    ],
)
def test_a_soft_bounce_asks_nothing(esp, esp_event):
    assert report_of(event(EventType.BOUNCED, esp_event, message_id="x"), esp) is None


def test_sendgrid_ids_are_the_head_of_sg_message_id_and_the_smtp_id():
    report = report_of(
        event(
            EventType.COMPLAINED,
            {
                "sg_message_id": "nhIMmON9SFOPcT0ii4nt2A.filter0001.1.2.0",
                "smtp-id": "<m@shop.test>",
            },
            message_id="<m@shop.test>",
        ),
        "SendGrid",
    )

    assert report is not None and report.action is Action.COMPLAIN
    assert report.relay_ids == ("nhIMmON9SFOPcT0ii4nt2A",)
    assert report.message_ids == ("<m@shop.test>", "<m@shop.test>")


@pytest.mark.parametrize(
    "event_type",
    [EventType.DELIVERED, EventType.DEFERRED, EventType.OPENED, EventType.QUEUED, "unknown"],
)
def test_other_events_ask_nothing(event_type):
    assert report_of(event(event_type, message_id="x"), "Mailgun") is None


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=3)
    ),
    max_leaves=10,
)


@given(
    event_type=st.sampled_from([EventType.BOUNCED, EventType.REJECTED, EventType.COMPLAINED]),
    esp=st.sampled_from(["Amazon SES", "SendGrid", "Mailgun", "Postmark"]),
    esp_event=JSONISH,
    recipient=JSONISH,
    message_id=JSONISH,
    mta_response=JSONISH,
)
def test_fields_of_any_type_never_raise(
    event_type, esp, esp_event, recipient, message_id, mta_response
):
    report = report_of(
        event(
            event_type,
            esp_event,
            recipient=recipient,
            message_id=message_id,
            mta_response=mta_response,
        ),
        esp,
    )
    if report is not None:
        # What reaches a query: printable ASCII, ids of the stored shape.
        assert re.fullmatch(r"[!-~]+", report.recipient)
        assert all(RELAY_ID.fullmatch(i) for i in report.relay_ids)
        assert all(isinstance(i, str) and i for i in report.message_ids)
