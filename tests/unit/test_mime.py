"""The bytes that go on the wire, built from unsaved model instances (no database)."""

import email
import email.policy
from datetime import UTC, datetime

import pytest

from deliveries.mime import build_mime, make_message_id
from deliveries.models import Delivery, Message

CREATED = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def make_message(**overrides) -> Message:
    fields = {
        "sender": "Shop <no-reply@shop.test>",
        "reply_to": [],
        "subject": "Your code is 123456",
        "text_body": "Your verification code is 123456.",
        "html_body": "",
        "headers": {},
        "priority": "normal",
        "message_id": "<0123abcd@shop.test>",
        "created_at": CREATED,
    }
    fields.update(overrides)
    return Message(**fields)


def make_deliveries(*specs: tuple[str, str, str]) -> list[Delivery]:
    return [Delivery(address=address, name=name, kind=kind) for address, name, kind in specs]


DEFAULT_RECIPIENTS = (
    ("ann@example.com", "Ann", Delivery.Kind.TO),
    ("bob@example.com", "", Delivery.Kind.TO),
    ("cy@example.com", "Cy Young", Delivery.Kind.CC),
    ("secret@example.com", "Hidden", Delivery.Kind.BCC),
)


def built(message: Message | None = None, recipients=DEFAULT_RECIPIENTS):
    raw = build_mime(message or make_message(), make_deliveries(*recipients))
    return raw, email.message_from_bytes(raw, policy=email.policy.default)


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def test_the_sender_and_the_visible_recipients_are_in_the_headers():
    _, parsed = built()
    assert parsed["From"].addresses[0].addr_spec == "no-reply@shop.test"
    assert parsed["From"].addresses[0].display_name == "Shop"
    to = [(a.display_name, a.addr_spec) for a in parsed["To"].addresses]
    assert to == [("Ann", "ann@example.com"), ("", "bob@example.com")]
    cc = [(a.display_name, a.addr_spec) for a in parsed["Cc"].addresses]
    assert cc == [("Cy Young", "cy@example.com")]


def test_a_bcc_recipient_appears_nowhere_in_the_message():
    raw, parsed = built()
    assert parsed["Bcc"] is None
    assert b"secret@example.com" not in raw
    assert b"Hidden" not in raw


def test_a_message_only_to_bcc_recipients_has_no_to_or_cc_header():
    raw, parsed = built(recipients=[("secret@example.com", "", Delivery.Kind.BCC)])
    assert parsed["To"] is None
    assert parsed["Cc"] is None
    assert b"secret@example.com" not in raw


def test_the_message_id_and_date_are_set():
    _, parsed = built()
    assert parsed["Message-ID"] == "<0123abcd@shop.test>"
    assert parsed["Date"].datetime == CREATED


def test_reply_to_lists_every_address():
    _, parsed = built(make_message(reply_to=["help@shop.test", "sales@shop.test"]))
    assert [a.addr_spec for a in parsed["Reply-To"].addresses] == [
        "help@shop.test",
        "sales@shop.test",
    ]


def test_a_text_only_message_is_plain_text():
    _, parsed = built()
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content().strip() == "Your verification code is 123456."


def test_an_html_only_message_is_html():
    _, parsed = built(make_message(text_body="", html_body="<p>Code <b>123456</b></p>"))
    assert parsed.get_content_type() == "text/html"
    assert "<b>123456</b>" in parsed.get_content()


def test_text_and_html_become_alternatives_of_one_message():
    message = make_message(text_body="Code: 123456", html_body="<p>Code: <b>123456</b></p>")
    _, parsed = built(message)
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().strip() == "Code: 123456"
    assert parts[1].get_content().strip() == "<p>Code: <b>123456</b></p>"


def test_a_custom_header_is_sent():
    _, parsed = built(make_message(headers={"X-Campaign": "welcome-2025", "List-Id": "<a.b>"}))
    assert parsed["X-Campaign"] == "welcome-2025"
    assert parsed["List-Id"] == "<a.b>"


@pytest.mark.parametrize("text_body", ["Hallo", ""])
def test_a_custom_content_language_header_is_sent(text_body):
    # The API accepts it (it is not a reserved header), so it must reach the recipient.
    message = make_message(
        text_body=text_body, html_body="<p>Hallo</p>", headers={"Content-Language": "de"}
    )
    _, parsed = built(message)
    assert parsed["Content-Language"] == "de"


def test_a_non_ascii_subject_is_encoded_and_decodes_back():
    subject = "Ihr Bestätigungscode: 123456 — ✓"
    raw, parsed = built(make_message(subject=subject))
    headers = header_block(raw)
    assert headers.isascii()
    assert b"=?utf-8?" in headers.lower()
    assert parsed["Subject"] == subject


def test_a_non_ascii_display_name_and_body_survive_the_round_trip():
    message = make_message(text_body="Grüße, Zoë")
    _, parsed = built(message, recipients=[("zoe@example.com", "Zoë Müller", Delivery.Kind.TO)])
    assert parsed["To"].addresses[0].display_name == "Zoë Müller"
    assert parsed.get_content().strip() == "Grüße, Zoë"


def test_the_message_ends_lines_with_crlf_as_smtp_requires():
    raw, _ = built()
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")


def test_a_message_id_is_made_in_the_senders_domain():
    assert make_message_id(unique="abc123", sender_address="no-reply@shop.test") == (
        "<abc123@shop.test>"
    )


def test_a_message_id_keeps_a_subdomain():
    message_id = make_message_id(unique="x", sender_address="ops@mail.eu.shop.test")
    assert message_id == "<x@mail.eu.shop.test>"
