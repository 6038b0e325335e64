"""Builds the RFC 5322 bytes of a message, once per message, for all its recipients."""

from __future__ import annotations

from collections.abc import Iterable
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr

from deliveries.models import Delivery, Message


def _display(name: str, address: str) -> str:
    return formataddr((name, address)) if name else address


def build_mime(message: Message, deliveries: Iterable[Delivery]) -> bytes:
    """The message as it goes on the wire. Bcc recipients get the mail but are not in a header."""
    mime = EmailMessage(policy=SMTP)
    mime["From"] = message.sender
    to = [_display(d.name, d.address) for d in deliveries if d.kind == Delivery.Kind.TO]
    cc = [_display(d.name, d.address) for d in deliveries if d.kind == Delivery.Kind.CC]
    if to:
        mime["To"] = ", ".join(to)
    if cc:
        mime["Cc"] = ", ".join(cc)
    if message.reply_to:
        mime["Reply-To"] = ", ".join(message.reply_to)
    mime["Subject"] = message.subject
    mime["Date"] = format_datetime(message.created_at)
    mime["Message-ID"] = message.message_id
    for name, value in message.headers.items():
        mime[name] = value
    if message.text_body and message.html_body:
        mime.set_content(message.text_body)
        mime.add_alternative(message.html_body, subtype="html")
    elif message.html_body:
        mime.set_content(message.html_body, subtype="html")
    else:
        mime.set_content(message.text_body)
    return mime.as_bytes()


def make_message_id(*, unique: str, sender_address: str) -> str:
    domain = Address(addr_spec=sender_address).domain or "mailhub.invalid"
    return f"<{unique}@{domain}>"
