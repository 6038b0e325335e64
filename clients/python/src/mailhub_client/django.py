"""A Django email backend that sends through Mailhub's REST API, for projects that do not share
Mailhub's database (``pip install "mailhub-client[django]"``)::

    EMAIL_BACKEND = "mailhub_client.django.EmailBackend"
    MAILHUB_API_URL = "https://mailhub.example.com"
    MAILHUB_API_KEY = os.environ["MAILHUB_API_KEY"]

``send_mail``, ``EmailMessage`` with attachments and ``EmailMultiAlternatives`` (an HTML
alternative, inline images with a ``Content-ID``) each become one ``POST /api/v1/messages``,
with an ``Idempotency-Key`` of its own that the client's retries (connection errors, ``429``,
``503``) repeat, so a retry never sends twice. As with Mailhub's in-process backend, a header
``X-Mailhub-Priority: high`` sets the priority and ``X-Mailhub-Tags: a, b`` the tags (both are
removed from the mail); ``From`` and ``Reply-To`` headers win over the fields; the headers
Mailhub writes itself (``To``, ``Date``, ``Message-ID``, ...) are dropped.

A message Mailhub refuses raises (``mailhub_client.errors.ValidationError``, naming the field),
unless ``fail_silently``: then it is logged and not counted. The others of the same call are
still sent. ``get_connection(api_url=..., api_key=..., timeout=..., retry=RetryPolicy(...))``
overrides the settings.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Sequence
from email.mime.base import MIMEBase
from email.utils import formataddr, getaddresses
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from mailhub_client._core import DEFAULT_TIMEOUT
from mailhub_client.attachments import DEFAULT_CONTENT_TYPE, Attachment
from mailhub_client.client import Mailhub
from mailhub_client.errors import MailhubError
from mailhub_client.retry import RetryPolicy

__all__ = ["EmailBackend", "InvalidEmail", "email_to_fields"]

logger = logging.getLogger("mailhub_client.django")

PRIORITY_HEADER = "x-mailhub-priority"
TAGS_HEADER = "x-mailhub-tags"
#: Headers Mailhub writes itself (from the message's fields), which the API refuses as custom
#: headers: a copy among a Django message's extra headers is dropped, not sent twice.
RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "sender",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "return-path",
        "received",
        "dkim-signature",
    }
)


class InvalidEmail(ValueError):
    """An EmailMessage this backend cannot express as a Mailhub message (say, an alternative
    that is not HTML)."""


class EmailBackend(BaseEmailBackend):
    """Django's ``EMAIL_BACKEND`` through Mailhub's REST API (settings ``MAILHUB_API_URL``,
    ``MAILHUB_API_KEY``). One client, with its HTTP connection, per ``open()``/``close()``."""

    def __init__(
        self,
        fail_silently: bool = False,
        *,
        api_url: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(fail_silently=fail_silently, **kwargs)
        self.api_url = api_url or str(getattr(settings, "MAILHUB_API_URL", "") or "")
        self.api_key = api_key or str(getattr(settings, "MAILHUB_API_KEY", "") or "")
        if not self.api_url or not self.api_key:
            raise ImproperlyConfigured(
                "mailhub_client.django.EmailBackend needs MAILHUB_API_URL and MAILHUB_API_KEY"
            )
        self.timeout = timeout
        self.retry = retry
        self.client: Mailhub | None = None

    def open(self) -> bool:
        if self.client is not None:
            return False
        self.client = Mailhub(self.api_url, self.api_key, timeout=self.timeout, retry=self.retry)
        return True

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        if not email_messages:
            return 0
        opened = self.open()
        assert self.client is not None
        sent = 0
        try:
            for email in email_messages:
                if not email.recipients():
                    continue
                try:
                    self.client.send(**email_to_fields(email))
                except (MailhubError, InvalidEmail):
                    if not self.fail_silently:
                        raise
                    logger.warning("not sent through Mailhub: %r", email.subject, exc_info=True)
                else:
                    sent += 1
        finally:
            if opened:
                self.close()
        return sent


def email_to_fields(email: EmailMessage) -> dict[str, Any]:
    """The keyword arguments of ``Mailhub.send`` for a Django ``EmailMessage``."""
    headers = {name: str(value) for name, value in email.extra_headers.items()}
    lowered = {name.lower(): name for name in headers}
    priority = headers.pop(lowered.get(PRIORITY_HEADER, ""), None)
    tags = headers.pop(lowered.get(TAGS_HEADER, ""), "")
    sender = headers.pop(lowered.get("from", ""), None) or email.from_email
    reply_to = list(email.reply_to) or _addresses(headers.pop(lowered.get("reply-to", ""), ""))
    for name in [name for name in headers if name.lower() in RESERVED_HEADERS]:
        del headers[name]
    text, html = _bodies(email)
    fields: dict[str, Any] = {
        "sender": sender,
        "to": list(email.to),
        "cc": list(email.cc),
        "bcc": list(email.bcc),
        "reply_to": reply_to,
        "subject": str(email.subject),
        # Mailhub insists on a body; Django allows an empty one (say, attachments only).
        "text": text if text or html else " ",
        "headers": headers,
        "tags": [tag.strip() for tag in tags.split(",") if tag.strip()],
        "attachments": [_attachment(part) for part in email.attachments],
    }
    if html:
        fields["html"] = html
    if priority:
        fields["priority"] = priority.strip().lower()
    return fields


def _addresses(header: str) -> list[str]:
    return [formataddr(pair) for pair in getaddresses([header]) if pair[1]]


def _bodies(email: EmailMessage) -> tuple[str, str]:
    text, html = "", ""
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


def _attachment(part: MIMEBase | tuple[Any, ...]) -> Attachment:
    if isinstance(part, MIMEBase):
        content_id = (part.get("Content-ID") or "").strip().strip("<>")
        payload = part.get_payload(decode=True)
        content_type = part.get_content_type()
        content = payload if isinstance(payload, bytes) else part.as_bytes()
        filename = part.get_filename() or ""
    else:
        filename, raw, content_type = part[0] or "", part[1], part[2]
        if isinstance(raw, EmailMessage):
            raw = raw.message()
        if hasattr(raw, "as_bytes"):
            content = raw.as_bytes()
            content_type = content_type or "message/rfc822"
        elif isinstance(raw, str):
            content = raw.encode("utf-8")
        else:
            content = bytes(raw)
        content_type = content_type or mimetypes.guess_type(filename)[0] or DEFAULT_CONTENT_TYPE
        content_id = ""
    if content_type.split("/", 1)[0].lower() in ("multipart", "message"):
        # The API attaches neither (a whole message inside a message); as bytes they arrive.
        filename = filename or "message.eml"
        content_type = DEFAULT_CONTENT_TYPE
    # The API wants a file name for every part; an inline image often has none.
    filename = filename or _name_for(content_id, content_type)
    return Attachment(filename, content, content_type, content_id or None)


def _name_for(content_id: str, content_type: str) -> str:
    stem = content_id.split("@", 1)[0].replace("/", "_").replace("\\", "_") or "attachment"
    return stem + (mimetypes.guess_extension(content_type) or "")
