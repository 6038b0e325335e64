"""What the send API promises, seen at a real SMTP server through real worker processes:
scheduled mail waits for its time, cancelled mail never goes, suppressed recipients never reach
SMTP, every recipient of a batch gets their own template context, attachments arrive intact."""

from __future__ import annotations

import base64
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from deliveries.models import Attempt, Delivery, Message, Template
from deliveries.states import MessageStatus
from tests.builders import message_payload
from tests.integration.conftest import wait_until, wait_until_final

pytestmark = pytest.mark.integration

URL = "/api/v1/messages"


def send(actor, **overrides) -> uuid.UUID:
    response = actor.api.post(URL, message_payload(**overrides), format="json")
    assert response.status_code == 202, response.content
    return uuid.UUID(response.json()["id"])


def test_a_scheduled_message_is_not_delivered_before_send_at_and_is_after(sink, acme):
    send_at = timezone.now() + timedelta(seconds=4)
    message_id = send(acme, to=["ann@example.com"], send_at=send_at.isoformat())

    # Dispatcher ticks every 0.5 s: several have run by now, none may have released it.
    time.sleep(2)
    assert timezone.now() < send_at, "the machine was too slow for this check to mean anything"
    assert sink.received == []
    assert Message.objects.get(id=message_id).status == MessageStatus.SCHEDULED

    message = wait_until_final(message_id, timeout=30)

    assert message.status == MessageStatus.DELIVERED
    [received] = sink.wait_for(1)
    assert received.rcpt_tos == ("ann@example.com",)
    attempt = Attempt.objects.get(delivery__message_id=message_id)
    assert attempt.started_at >= send_at


def test_a_cancelled_scheduled_message_is_never_delivered(sink, acme):
    send_at = timezone.now() + timedelta(seconds=2)
    cancelled = send(acme, to=["ann@example.com"], send_at=send_at.isoformat())
    answer = acme.api.post(f"{URL}/{cancelled}/cancel").json()
    assert answer["cancelled"] == ["ann@example.com"]

    wait_until(lambda: timezone.now() > send_at + timedelta(seconds=1.5), what="send_at passed")
    control = send(acme, to=["bob@example.com"])
    wait_until_final(control)

    assert sink.addresses_received() == ["bob@example.com"]
    assert Message.objects.get(id=cancelled).status == MessageStatus.CANCELLED


def test_suppressed_recipients_never_reach_the_smtp_server(sink, acme):
    acme.api.post("/api/v1/suppressions", {"address": "bob@example.com"}, format="json")
    mixed = send(acme, to=["ann@example.com", "Bob@Example.com"])
    only_suppressed = send(acme, to=["bob@example.com"])

    assert Message.objects.get(id=only_suppressed).status == MessageStatus.SUPPRESSED
    assert wait_until_final(mixed).status == MessageStatus.PARTIALLY_DELIVERED
    control = send(acme, to=["cy@example.com"])
    wait_until_final(control)

    assert sorted(sink.addresses_received()) == ["ann@example.com", "cy@example.com"]
    assert not Attempt.objects.filter(delivery__address__iexact="bob@example.com").exists()


def test_a_hard_bounce_suppresses_the_address_and_the_next_send_skips_smtp(sink, acme):
    sink.script_rcpt("gone@example.com", "550 5.1.1 no such user")
    bounced = send(acme, to=["gone@example.com"])
    assert wait_until_final(bounced).status == MessageStatus.BOUNCED

    response = acme.api.get("/api/v1/suppressions/gone@example.com")
    assert response.status_code == 200, response.content
    assert response.json()["reason"] == "hard_bounce"
    assert "550" in response.json()["detail"]

    again = send(acme, to=["gone@example.com"])
    assert Message.objects.get(id=again).status == MessageStatus.SUPPRESSED
    assert Attempt.objects.filter(delivery__address="gone@example.com").count() == 1


def test_each_recipient_of_a_batch_gets_their_own_template_context(sink, acme):
    Template.objects.create(
        client=acme.client,
        name="code",
        subject="{{ name }}, your code",
        text="Hello {{ name }}, your code is {{ code }}. {{ footer }}",
        html="<p>Hello {{ name }}: <b>{{ code }}</b></p>",
    )
    people = [("ann", "111"), ("bob", "222"), ("cy", "333")]
    response = acme.api.post(
        f"{URL}/batch",
        {
            "defaults": {
                "from": "no-reply@shop.test",
                "template": "code",
                "context": {"footer": "-- Shop"},
            },
            "messages": [
                {"to": [f"{name}@example.com"], "context": {"name": name.title(), "code": code}}
                for name, code in people
            ],
        },
        format="json",
    )
    assert response.status_code == 202, response.content

    received = {m.rcpt_tos[0]: m.parsed for m in sink.wait_for(3)}
    for name, code in people:
        mime = received[f"{name}@example.com"]
        assert mime["Subject"] == f"{name.title()}, your code"
        text = mime.get_body(("plain",)).get_content()
        assert text.strip() == f"Hello {name.title()}, your code is {code}. -- Shop"
        assert f"<b>{code}</b>" in mime.get_body(("html",)).get_content()
    for result in response.json()["results"]:
        wait_until_final(result["id"])


def test_attachments_and_inline_images_arrive_intact(sink, acme):
    pdf = b"%PDF-1.4\n" + bytes(range(256))
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    message_id = send(
        acme,
        html='<p>Logo: <img src="cid:logo@shop"></p>',
        attachments=[
            {
                "filename": "invoice.pdf",
                "content_type": "application/pdf",
                "content": base64.b64encode(pdf).decode(),
            },
            {
                "filename": "logo.png",
                "content_type": "image/png",
                "content": base64.b64encode(png).decode(),
                "disposition": "inline",
                "content_id": "logo@shop",
            },
        ],
    )
    [received] = sink.wait_for(1)
    wait_until_final(message_id)

    parts = {part.get_filename(): part for part in received.parsed.walk() if part.get_filename()}
    assert parts["invoice.pdf"].get_content() == pdf
    assert parts["invoice.pdf"].get_content_disposition() == "attachment"
    assert parts["logo.png"].get_content() == png
    assert parts["logo.png"]["Content-ID"] == "<logo@shop>"
    assert parts["logo.png"].get_content_disposition() == "inline"
    assert Delivery.objects.get(message_id=message_id).status == "delivered"
