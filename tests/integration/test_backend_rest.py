"""The REST email backend the README gives other Django projects, run as printed there against a
live Mailhub (Django's live server on the test database) and the real workers and SMTP sink."""

import re
import types
from email.mime.image import MIMEImage

import pytest
from django.core.mail import EmailMultiAlternatives

from deliveries.models import Message
from deliveries.states import MessageStatus
from tests.integration.conftest import wait_until_final
from tests.support.workers import ROOT

pytestmark = pytest.mark.integration

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 20
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(255, -1, -1)) * 4


def readme_backend() -> type:
    readme = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- mailhub-api-backend -->\n```python\n(.*?)```\n<!-- /mailhub-api-backend -->",
        readme,
        re.S,
    )
    assert block, "the README's backend snippet is missing"
    module = types.ModuleType("readme_mailhub_backend")
    exec(compile(block.group(1), "README.md", "exec"), module.__dict__)
    return module.MailhubApiBackend


def test_the_readme_rest_backend_delivers_mail_with_attachments(sink, live_server, acme, settings):
    settings.MAILHUB_API_URL = live_server.url
    settings.MAILHUB_API_KEY = acme.key
    email = EmailMultiAlternatives(
        subject="Invoice 7",
        body="Attached.",
        from_email="Billing <billing@shop.test>",
        to=["ann@example.com"],
        headers={"X-Mailhub-Priority": "HIGH", "X-Invoice": "7"},
        connection=readme_backend()(),
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
    assert wait_until_final(message.id).status == MessageStatus.DELIVERED
    [received] = sink.wait_for(1)
    mime = received.parsed
    assert mime["X-Invoice"] == "7"
    assert mime.get_body(("plain",)).get_content().strip() == "Attached."
    parts = {part.get_filename(): part for part in mime.walk() if part.get_filename()}
    assert parts["invoice.pdf"].get_payload(decode=True) == PDF
    assert parts["logo.png"]["Content-ID"] == "<logo@shop.test>"
    assert parts["logo.png"].get_payload(decode=True) == PNG


def test_the_readme_rest_backend_raises_on_a_refused_message(live_server, acme, settings):
    settings.MAILHUB_API_URL = live_server.url
    settings.MAILHUB_API_KEY = acme.key
    backend = readme_backend()
    email = EmailMultiAlternatives("x", "y", "no-reply@shop.test", ["not an address"])

    with pytest.raises(Exception, match="400"):
        backend().send_messages([email])
    assert backend(fail_silently=True).send_messages([email]) == 0
    assert not Message.objects.exists()
