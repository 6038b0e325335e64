"""Builds the RFC 5322 bytes of a message, once per message, for all its recipients."""

from __future__ import annotations

from collections.abc import Iterable
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr

from deliveries.models import Attachment, Delivery, Message


class _CachedHeaderRegistry(HeaderRegistry):
    """The standard registry builds a new header class on every lookup (``type(...)``), which
    made it the largest cost of sending; the classes never change, so build each once."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


_POLICY = SMTP.clone(header_factory=_CachedHeaderRegistry())


def _display(name: str, address: str) -> str:
    return formataddr((name, address)) if name else address


def build_mime(
    message: Message, deliveries: Iterable[Delivery], attachments: Iterable[Attachment] = ()
) -> bytes:
    """The message as it goes on the wire. Bcc recipients get the mail but are not in a header.

    Built once per message and sent to all its recipients in one transaction.
    """
    deliveries = list(deliveries)
    mime = EmailMessage(policy=_POLICY)
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
    if message.text_body and message.html_body:
        mime.set_content(message.text_body)
        mime.add_alternative(message.html_body, subtype="html")
    elif message.html_body:
        mime.set_content(message.html_body, subtype="html")
    else:
        mime.set_content(message.text_body)
    _attach(mime, list(attachments))
    # Custom headers last: set_content() drops any Content-* header set before it.
    for name, value in message.headers.items():
        mime[name] = value
    return mime.as_bytes()


def _attach(mime: EmailMessage, attachments: list[Attachment]) -> None:
    inline = [a for a in attachments if a.content_id]
    regular = [a for a in attachments if not a.content_id]
    if inline:
        # Inline parts belong next to the HTML, in a multipart/related around it.
        html_part = mime.get_body(("html",))
        target = html_part if html_part is not None else mime
        for part in inline:
            maintype, subtype = part.content_type.split("/", 1)
            target.add_related(
                bytes(part.content),
                maintype=maintype,
                subtype=subtype,
                cid=f"<{part.content_id}>",
                filename=part.filename,
                disposition="inline",
            )
    for part in regular:
        maintype, subtype = part.content_type.split("/", 1)
        mime.add_attachment(
            bytes(part.content), maintype=maintype, subtype=subtype, filename=part.filename
        )


def make_message_id(*, unique: str, sender_address: str) -> str:
    domain = Address(addr_spec=sender_address).domain or "mailhub.invalid"
    return f"<{unique}@{domain}>"
