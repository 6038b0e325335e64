"""Django's mail API through api.backends.MailhubBackend, on the real stack: the mail is
accepted, sent by a worker and arrives at the SMTP sink with every part intact."""

from email.mime.image import MIMEImage

import pytest
from django.core.mail import EmailMultiAlternatives, get_connection, send_mail

from api.backends import InvalidEmail
from deliveries.models import Message
from deliveries.states import MessageStatus
from tests.integration.conftest import wait_until_final

pytestmark = pytest.mark.integration

BACKEND = "api.backends.MailhubBackend"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40  # binary, every byte value
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(255, -1, -1)) * 8


def test_send_mail_arrives_at_the_sink(sink, settings):
    settings.MAILHUB_EMAIL_BACKEND_CLIENT = "shop-django"

    sent = send_mail(
        "Your code",
        "123456",
        "Shop <no-reply@shop.test>",
        ["ann@example.com"],
        connection=get_connection(BACKEND),
    )

    assert sent == 1
    message = Message.objects.get()
    assert message.client.name == "shop-django" and message.priority == "normal"
    assert wait_until_final(message.id).status == MessageStatus.DELIVERED
    [received] = sink.wait_for(1)
    assert received.rcpt_tos == ("ann@example.com",)
    assert received.parsed["Subject"] == "Your code"
    assert received.parsed.get_body(("plain",)).get_content().strip() == "123456"


def test_an_email_with_alternatives_and_attachments_arrives_intact(sink):
    email = EmailMultiAlternatives(
        subject="Invoice 42",
        body="Your invoice is attached.",
        from_email="Billing <billing@shop.test>",
        to=["ann@example.com"],
        bcc=["audit@shop.test"],
        headers={"X-Mailhub-Priority": "high", "X-Invoice": "42"},
        connection=get_connection(BACKEND),
    )
    email.attach_alternative('<p>Invoice <img src="cid:logo@shop.test"></p>', "text/html")
    email.attach("invoice.pdf", PDF, "application/pdf")
    email.attach("notes.txt", "Ünïcode notes\n", "text/plain")
    logo = MIMEImage(PNG, "png")
    logo.add_header("Content-ID", "<logo@shop.test>")
    logo.add_header("Content-Disposition", "inline", filename="logo.png")
    email.attach(logo)

    assert email.send() == 1

    message = Message.objects.get()
    assert message.priority == "high"
    assert wait_until_final(message.id).status == MessageStatus.DELIVERED
    [received] = sink.wait_for(1)
    mime = received.parsed
    assert sorted(received.rcpt_tos) == ["ann@example.com", "audit@shop.test"]
    assert mime["X-Invoice"] == "42" and mime["X-Mailhub-Priority"] is None
    assert mime.get_body(("plain",)).get_content().strip() == "Your invoice is attached."
    assert "cid:logo@shop.test" in mime.get_body(("html",)).get_content()
    parts = {part.get_filename(): part for part in mime.walk() if part.get_filename()}
    assert parts["invoice.pdf"].get_content_type() == "application/pdf"
    assert parts["invoice.pdf"].get_payload(decode=True) == PDF
    assert parts["notes.txt"].get_payload(decode=True).decode() == "Ünïcode notes\n"
    assert parts["logo.png"]["Content-ID"] == "<logo@shop.test>"
    assert parts["logo.png"].get_payload(decode=True) == PNG


def test_several_messages_are_accepted_in_one_call(sink):
    connection = get_connection(BACKEND)
    emails = [
        EmailMultiAlternatives(f"n{i}", "body", "no-reply@shop.test", [f"u{i}@example.com"])
        for i in range(3)
    ]

    assert connection.send_messages(emails) == 3

    assert len(sink.wait_for(3)) == 3


def test_an_invalid_message_raises_or_is_skipped_when_failing_silently(db):
    bad = EmailMultiAlternatives("x", "y", "no-reply@shop.test", ["not an address"])
    good = EmailMultiAlternatives("x", "y", "no-reply@shop.test", ["ann@example.com"])

    with pytest.raises(InvalidEmail, match="to"):
        get_connection(BACKEND).send_messages([bad, good])
    assert not Message.objects.exists()

    assert get_connection(BACKEND, fail_silently=True).send_messages([bad, good]) == 1
    assert Message.objects.count() == 1
