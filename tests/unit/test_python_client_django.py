"""The client's Django email backend, the conversion part: a Django EmailMessage becomes the
fields of one send the way Mailhub's in-process backend (api/backends.py) reads it."""

from __future__ import annotations

from email.mime.image import MIMEImage

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, EmailMultiAlternatives
from mailhub_client.attachments import Attachment
from mailhub_client.django import RESERVED_HEADERS as CLIENT_RESERVED_HEADERS
from mailhub_client.django import EmailBackend, InvalidEmail, email_to_fields

from api.serializers.fields import RESERVED_HEADERS

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(16))


def test_the_headers_it_drops_are_those_the_api_refuses():
    assert CLIENT_RESERVED_HEADERS == RESERVED_HEADERS


def test_priority_and_tags_headers_become_fields_and_leave_the_mail():
    email = EmailMessage(
        "Invoice",
        "Attached.",
        "billing@shop.test",
        ["ann@example.com"],
        bcc=["audit@shop.test"],
        headers={
            "X-Mailhub-Priority": " HIGH ",
            "x-mailhub-tags": "invoice, , monthly",
            "X-Invoice": "7",
            "Date": "Mon, 1 Jan 2024 00:00:00 +0000",
            "Reply-To": "Billing <help@shop.test>",
        },
    )

    fields = email_to_fields(email)

    assert fields["priority"] == "high"
    assert fields["tags"] == ["invoice", "monthly"]
    assert fields["headers"] == {"X-Invoice": "7"}
    assert fields["reply_to"] == ["Billing <help@shop.test>"]
    assert fields["bcc"] == ["audit@shop.test"]
    assert fields["sender"] == "billing@shop.test" and fields["text"] == "Attached."
    assert "html" not in fields


def test_an_html_alternative_and_inline_images_with_or_without_a_file_name():
    email = EmailMultiAlternatives("Hi", "Plain.", "a@shop.test", ["ann@example.com"])
    email.attach_alternative('<p><img src="cid:logo@shop.test"></p>', "text/html")
    named = MIMEImage(PNG, "png")
    named.add_header("Content-ID", "<logo@shop.test>")
    named.add_header("Content-Disposition", "inline", filename="logo.png")
    email.attach(named)
    unnamed = MIMEImage(PNG, "png")
    unnamed.add_header("Content-ID", "<banner@shop.test>")
    email.attach(unnamed)
    email.attach("notes.txt", "ünïcode", None)

    fields = email_to_fields(email)

    assert fields["html"] == '<p><img src="cid:logo@shop.test"></p>' and fields["text"] == "Plain."
    assert fields["attachments"] == [
        Attachment("logo.png", PNG, "image/png", "logo@shop.test"),
        Attachment("banner.png", PNG, "image/png", "banner@shop.test"),
        Attachment("notes.txt", "ünïcode".encode(), "text/plain", None),
    ]


def test_an_attached_email_travels_as_bytes_and_an_empty_body_as_a_space():
    inner = EmailMessage("Forwarded", "Inner body.", "x@shop.test", ["y@example.com"])
    email = EmailMessage("Fwd", "", "a@shop.test", ["ann@example.com"])
    email.attach(None, inner, "message/rfc822")

    [part] = email_to_fields(email)["attachments"]

    assert part.filename == "message.eml" and part.content_type == "application/octet-stream"
    assert b"Inner body." in part.content
    assert email_to_fields(email)["text"] == " "


def test_an_alternative_other_than_html_is_refused():
    email = EmailMultiAlternatives("Hi", "Plain.", "a@shop.test", ["ann@example.com"])
    email.attach_alternative("{}", "application/json")
    with pytest.raises(InvalidEmail, match="application/json"):
        email_to_fields(email)


def test_the_backend_needs_a_url_and_a_key(settings):
    settings.MAILHUB_API_URL = ""
    with pytest.raises(ImproperlyConfigured, match="MAILHUB_API_URL"):
        EmailBackend()
    assert EmailBackend(api_url="http://mailhub.test", api_key="mh_x").send_messages([]) == 0
