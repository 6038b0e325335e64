"""A Django email backend that hands mail to Mailhub in-process: a way mail enters, beside the
validator it shares with the REST API.

    EMAIL_BACKEND = "api.backends.MailhubBackend"

``send_mail``, ``EmailMessage`` (attachments included, inline ``Content-ID`` parts too) and
``EmailMultiAlternatives`` become queued Mailhub messages of the client named by
``MAILHUB_EMAIL_BACKEND_CLIENT``. The priority comes from an ``X-Mailhub-Priority:
high|normal|low`` header, else from ``MAILHUB_EMAIL_BACKEND_PRIORITY``; an ``X-Mailhub-Tags: a,
b`` header sets tags; ``X-Mailhub-Unsubscribe: yes|no`` turns one-click unsubscribe links on or
off (without it: on for `low` priority, as in the API).

Everything but the attachments is validated by the REST API's serializer, exactly as the API
validates it. Attachments are held to the API's limits (``MAILHUB_MAX_ATTACHMENTS``, and
``MAILHUB_MAX_ATTACHMENT_BYTES`` each, ``MAILHUB_MAX_ATTACHMENTS_BYTES`` together, decoded; one
content id per inline part) and their headers must be writable as the MIME builder writes them,
so what is accepted can be built; but not to the API's rules on their form, which Django's own
parts would break: a part may have no file name (an inline image often has none), and any
content type, ``message/rfc822`` (an attached ``EmailMessage``) included.

All messages of one ``send_messages`` call are accepted in one transaction. Inside the caller's
own transaction (``ATOMIC_REQUESTS``, ``transaction.atomic``) they are published only when that
transaction commits: a rolled-back order confirmation is never sent.

A Django project that does not share Mailhub's database sends through the REST API instead,
with the Python client's backend (``mailhub_client.django.EmailBackend``, in clients/python).
"""

from __future__ import annotations

import dataclasses
import logging
import mimetypes
from collections.abc import Sequence
from email.mime.base import MIMEBase
from email.utils import formataddr, getaddresses

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import DEFAULT_ATTACHMENT_MIME_TYPE
from rest_framework.exceptions import ValidationError

from accounts.services import client_get_or_create
from api.errors import validation_summary
from api.serializers.fields import RESERVED_HEADERS
from api.serializers.intake import MessageValidator
from deliveries.mime import attachment_headers
from deliveries.services import AttachmentDraft, MessageDraft, messages_accept

logger = logging.getLogger(__name__)

PRIORITY_HEADER = "x-mailhub-priority"
TAGS_HEADER = "x-mailhub-tags"
UNSUBSCRIBE_HEADER = "x-mailhub-unsubscribe"
#: What X-Mailhub-Unsubscribe may say; anything else is refused (the API's field is a boolean).
_UNSUBSCRIBE_VALUES = {
    "yes": True,
    "true": True,
    "1": True,
    "no": False,
    "false": False,
    "0": False,
}


class InvalidEmail(ValueError):
    """An EmailMessage Mailhub cannot accept; the message says which field and why."""


class MailhubBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        drafts = []
        validator = EmailValidator()  # one for the call: what the messages share is checked once
        for email in email_messages:
            if not email.recipients():
                continue
            try:
                drafts.append(email_to_draft(email, validator=validator))
            except InvalidEmail:
                if not self.fail_silently:
                    raise
                logger.warning("not sent through Mailhub: %r", email.subject, exc_info=True)
        if not drafts:
            return 0
        try:
            client = client_get_or_create(name=settings.MAILHUB_EMAIL_BACKEND_CLIENT)
            messages_accept(client=client, drafts=drafts)
        except Exception:
            if not self.fail_silently:
                raise
            logger.exception("Mailhub could not accept %d message(s)", len(drafts))
            return 0
        return len(drafts)


class EmailValidator:
    """The API's validation of the payloads of one ``send_messages`` call (``MessageValidator``).

    Values most messages share, an empty list of Cc addresses or the one From address of the
    application, are put in each payload as the very object of the validator's defaults, so that
    each is validated once for the whole call instead of once per message.
    """

    def __init__(self) -> None:
        self._defaults: dict[str, object] = {
            "cc": [],
            "bcc": [],
            "reply_to": [],
            "html": "",
            "headers": {},
            "tags": [],
            "priority": settings.MAILHUB_EMAIL_BACKEND_PRIORITY,
            "unsubscribe": None,
        }
        self._validator = MessageValidator(self._defaults)

    def draft(self, payload: dict[str, object]) -> MessageDraft:
        shared = self._defaults
        shared.setdefault("from", payload["from"])  # the first message's: most send as one
        for name, value in payload.items():
            if name in shared and value == shared[name]:
                payload[name] = shared[name]
        return self._validator.draft(payload)


def email_to_draft(email: EmailMessage, *, validator: EmailValidator | None = None) -> MessageDraft:
    """Translate a Django EmailMessage into a validated MessageDraft, or raise InvalidEmail."""
    headers = {name: str(value) for name, value in email.extra_headers.items()}
    lowered = {name.lower(): name for name in headers}
    priority = headers.pop(lowered.get(PRIORITY_HEADER, ""), None)
    tags = headers.pop(lowered.get(TAGS_HEADER, ""), "")
    unsubscribe_header = headers.pop(lowered.get(UNSUBSCRIBE_HEADER, ""), None)
    unsubscribe = None
    if unsubscribe_header is not None:
        unsubscribe = _UNSUBSCRIBE_VALUES.get(unsubscribe_header.strip().lower())
        if unsubscribe is None:
            raise InvalidEmail(
                f"Mailhub cannot send {email.subject!r}: X-Mailhub-Unsubscribe is yes or no, "
                f"not {unsubscribe_header[:50]!r}"
            )
    sender = headers.pop(lowered.get("from", ""), None) or email.from_email
    reply_to = list(email.reply_to) or _addresses(headers.pop(lowered.get("reply-to", ""), ""))
    # Mailhub writes To, Cc, Date and Message-ID itself (one Message-ID for every attempt) from
    # the envelope it delivers to; a copy given as an extra header is dropped, not sent twice.
    dropped = [name for name in headers if name.lower() in RESERVED_HEADERS]
    for name in dropped:
        del headers[name]
    if dropped:
        logger.debug("dropped headers Mailhub writes itself: %s", ", ".join(dropped))
    text, html = _bodies(email)
    payload: dict[str, object] = {
        "from": sender,
        "to": list(email.to),
        "cc": list(email.cc),
        "bcc": list(email.bcc),
        "reply_to": reply_to,
        "subject": str(email.subject),
        # The API insists on a body; Django allows an empty one (say, attachments only).
        "text": text if text or html else " ",
        "html": html,
        "headers": headers,
        "priority": (priority or settings.MAILHUB_EMAIL_BACKEND_PRIORITY).strip().lower(),
        "tags": [tag.strip() for tag in tags.split(",") if tag.strip()],
        "unsubscribe": unsubscribe,
    }
    try:
        draft = (validator or EmailValidator()).draft(payload)
    except ValidationError as exc:
        problems = validation_summary(exc.detail)
        raise InvalidEmail(f"Mailhub cannot send {email.subject!r}: {problems}") from None
    attachments = [_attachment(part) for part in email.attachments]
    if problem := attachments_problem(attachments):
        raise InvalidEmail(f"Mailhub cannot send {email.subject!r}: {problem}")
    return dataclasses.replace(draft, text=text, attachments=attachments)


def attachments_problem(attachments: Sequence[AttachmentDraft]) -> str:
    """What the REST API would refuse in these attachments' sizes, or the MIME builder in their
    headers; "" if nothing. The API's messages, for the same limits."""
    if len(attachments) > settings.MAILHUB_MAX_ATTACHMENTS:
        return f"attachments: At most {settings.MAILHUB_MAX_ATTACHMENTS} attachments per message."
    limit = settings.MAILHUB_MAX_ATTACHMENT_BYTES
    for index, part in enumerate(attachments):
        if len(part.content) > limit:
            return (
                f"attachments[{index}].content: An attachment is at most {limit} bytes "
                f"(decoded); this one is {len(part.content)}."
            )
    total = sum(len(part.content) for part in attachments)
    if total > settings.MAILHUB_MAX_ATTACHMENTS_BYTES:
        return (
            f"attachments: Attachments are at most {settings.MAILHUB_MAX_ATTACHMENTS_BYTES} "
            f"bytes together (decoded); these are {total}."
        )
    content_ids = [part.content_id for part in attachments if part.content_id]
    if len(content_ids) != len(set(content_ids)):
        return "attachments: Each inline part needs its own content_id."
    for index, part in enumerate(attachments):
        try:
            attachment_headers(
                filename=part.filename, content_type=part.content_type, content_id=part.content_id
            )
        except Exception as exc:  # whatever the library fails with, the part cannot be built
            return f"attachments[{index}]: Cannot be written as a mail header ({exc})."
    return ""


def _addresses(header: str) -> list[str]:
    return [formataddr(pair) for pair in getaddresses([header]) if pair[1]]


def _bodies(email: EmailMessage) -> tuple[str, str]:
    text, html = "", ""
    # str(): a body may be a lazy translation, as the subject may (Django sends either).
    if email.content_subtype == "html":
        html = str(email.body)
    else:
        text = str(email.body)
    for alternative in getattr(email, "alternatives", ()):
        content, mimetype = alternative[0], alternative[1]
        if mimetype == "text/html" and not html:
            html = str(content)
        elif mimetype == "text/plain" and not text:
            text = str(content)
        else:
            raise InvalidEmail(f"unsupported alternative part {mimetype!r} (text/html only)")
    return text, html


def _attachment(part: MIMEBase | tuple) -> AttachmentDraft:
    if isinstance(part, MIMEBase):
        content_id = (part.get("Content-ID") or "").strip().strip("<>")
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):  # None: a multipart or message/rfc822 part, kept whole
            payload = part.as_bytes()
        return AttachmentDraft(
            filename=part.get_filename() or "",
            content_type=part.get_content_type(),
            content=payload,
            content_id=content_id,
        )
    filename, content, mimetype = part[0], part[1], part[2]
    mimetype = mimetype or mimetypes.guess_type(filename or "")[0] or DEFAULT_ATTACHMENT_MIME_TYPE
    if isinstance(content, EmailMessage):
        content = content.message().as_bytes()
    elif hasattr(content, "as_bytes"):
        content = content.as_bytes()
    elif isinstance(content, str):
        content = content.encode("utf-8")
    return AttachmentDraft(filename=filename or "", content_type=mimetype, content=content)
