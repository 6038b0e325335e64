"""The Python client's Django email backend (mailhub_client.django.EmailBackend), configured as
the client's README prints it, against a live Mailhub (Django's live server on the test
database) and the real workers and SMTP sink."""

import re
from email.mime.image import MIMEImage

import pytest
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from mailhub_client.errors import ValidationError

from deliveries.models import Message
from deliveries.states import MessageStatus
from tests.integration.conftest import wait_until_final
from tests.support.workers import ROOT

pytestmark = pytest.mark.integration

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 20
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(255, -1, -1)) * 4
README = ROOT / "clients" / "python" / "README.md"


@pytest.fixture
def readme_settings(live_server, acme, settings, monkeypatch):
    """The settings block of the client's README, run as printed with this Mailhub's URL and
    acme's key in the environment, and applied."""
    block = re.search(
        r"<!-- mailhub-python-client-django -->\n```python\n(.*?)```\n"
        r"<!-- /mailhub-python-client-django -->",
        README.read_text(),
        re.S,
    )
    assert block, "the README's Django settings are missing"
    monkeypatch.setenv("MAILHUB_URL", live_server.url)
    monkeypatch.setenv("MAILHUB_API_KEY", acme.key)
    namespace = {}
    exec(compile(block.group(1), str(README), "exec"), namespace)
    for name in ("EMAIL_BACKEND", "MAILHUB_API_URL", "MAILHUB_API_KEY"):
        setattr(settings, name, namespace[name])
    return settings


def test_the_backend_delivers_mail_with_attachments_and_inline_images(sink, readme_settings, acme):
    email = EmailMultiAlternatives(
        subject="Invoice 7",
        body="Attached.",
        from_email="Billing <billing@shop.test>",
        to=["ann@example.com"],
        headers={
            "X-Mailhub-Priority": "HIGH",
            "X-Mailhub-Tags": "invoice, monthly",
            "X-Invoice": "7",
        },
    )
    email.attach_alternative('<p>Invoice <img src="cid:logo@shop.test"></p>', "text/html")
    email.attach("invoice.pdf", PDF, "application/pdf")
    logo = MIMEImage(PNG, "png")
    logo.add_header("Content-ID", "<logo@shop.test>")
    logo.add_header("Content-Disposition", "inline", filename="logo.png")
    email.attach(logo)

    assert email.send() == 1

    message = Message.objects.get()
    assert message.client == acme.client and message.priority == "high"
    assert message.tags == ["invoice", "monthly"]
    assert wait_until_final(message.id).status == MessageStatus.DELIVERED
    [received] = sink.wait_for(1)
    mime = received.parsed
    assert mime["X-Invoice"] == "7" and mime["X-Mailhub-Priority"] is None
    assert mime.get_body(("plain",)).get_content().strip() == "Attached."
    parts = {part.get_filename(): part for part in mime.walk() if part.get_filename()}
    assert parts["invoice.pdf"].get_payload(decode=True) == PDF
    assert parts["logo.png"]["Content-ID"] == "<logo@shop.test>"
    assert parts["logo.png"].get_payload(decode=True) == PNG


def test_send_mail_and_a_connection_reused_for_several_messages(sink, readme_settings):
    assert mail.send_mail("One", "First.", "a@shop.test", ["ann@example.com"]) == 1
    with mail.get_connection() as connection:
        messages = [
            mail.EmailMessage(f"Mass {n}", "Body.", "a@shop.test", [f"r{n}@example.com"])
            for n in range(3)
        ]
        assert connection.send_messages(messages) == 3
    assert sorted(r.rcpt_tos[0] for r in sink.wait_for(4)) == [
        "ann@example.com",
        "r0@example.com",
        "r1@example.com",
        "r2@example.com",
    ]


def test_a_refused_message_raises_unless_silenced_and_its_neighbours_still_go(readme_settings):
    refused = EmailMultiAlternatives("x", "y", "no-reply@shop.test", ["not an address"])
    good = EmailMultiAlternatives("ok", "y", "no-reply@shop.test", ["ann@example.com"])

    with pytest.raises(ValidationError) as invalid:
        mail.get_connection().send_messages([refused])
    assert invalid.value.errors[0]["field"] == "to[0]"
    assert not Message.objects.exists()

    assert mail.get_connection(fail_silently=True).send_messages([refused, good]) == 1
    assert Message.objects.get().subject == "ok"
