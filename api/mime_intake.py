"""A message submitted over SMTP, turned into what the REST API's serializer takes, and validated
by it: one set of rules for every way mail comes in.

The envelope decides who gets the message: each ``RCPT TO`` is a recipient, shown in ``To`` or
``Cc`` when the message's own ``To`` or ``Cc`` header names it (with the display name given
there), and a ``bcc`` recipient otherwise. The ``From`` header is the sender (the envelope's
``MAIL FROM`` when there is none), ``Reply-To`` the replies' address, ``Subject`` the subject,
the first ``text/plain`` and ``text/html`` parts that are not attachments the bodies, and every
other part an attachment (inline when it has a ``Content-ID`` and is not marked as an
attachment). ``X-Mailhub-Priority: high``, ``X-Mailhub-Tags: a, b`` and ``X-Mailhub-Metadata:
{"order": "7"}`` (a JSON object) set those fields and are not sent. Every other header is a custom
header, held to the API's rules (each at most once, at most ``MAILHUB_MAX_HEADERS``, the header
rule) but for those Mailhub writes itself (``Date``, ``Message-ID``, ``MIME-Version``, the content
headers, ``Received``, ...), which are dropped, as the Django email backend drops them.

Header values are read as a recipient's software reads them (RFC 2047 encoded words decoded,
folded lines unfolded) and validated in that form, so an encoded line break is refused exactly
as the API refuses it. Attachments are held to the API's limits and must be writable, not to its
rules on their form (a part may have no file name, or be a ``message/rfc822``), as in
``api.backends``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from email import errors as email_errors
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from typing import Any

from api.backends import PRIORITY_HEADER, TAGS_HEADER, attachments_problem
from api.errors import validation_summary
from api.serializers.fields import RESERVED_HEADERS
from api.serializers.intake import MessageCreateSerializer
from deliveries.mime import CachedHeaderRegistry
from deliveries.services import AttachmentDraft, MessageDraft

logger = logging.getLogger(__name__)

METADATA_HEADER = "x-mailhub-metadata"
#: Headers that become message fields, or that Mailhub writes itself: never custom headers.
_NOT_CUSTOM = RESERVED_HEADERS | {PRIORITY_HEADER, TAGS_HEADER, METADATA_HEADER}
#: Headers whose second copy would leave it open which one a field was taken from.
_SINGLE = ("from", "subject", "reply-to", PRIORITY_HEADER, TAGS_HEADER, METADATA_HEADER)
#: multipart/* inside multipart/* this deep is no mail any client writes.
MAX_NESTING = 20
#: Damage after which the parser's reading of a message is a guess: refused rather than sent.
_FATAL_DEFECTS: dict[type[email_errors.MessageDefect], str] = {
    email_errors.MissingHeaderBodySeparatorDefect: "a line of the header section is not a header "
    "field (no colon, or a character no field name may hold)",
    email_errors.FirstHeaderLineIsContinuationDefect: "the message starts with a folded line",
    email_errors.NoBoundaryInMultipartDefect: "a multipart part has no boundary",
    email_errors.StartBoundaryNotFoundDefect: "a multipart part's boundary never occurs",
    email_errors.MultipartInvariantViolationDefect: "a multipart part holds no parts",
    email_errors.InvalidBase64CharactersDefect: "a base64 part holds characters base64 has not",
    email_errors.InvalidBase64LengthDefect: "a base64 part is cut short",
    email_errors.InvalidBase64PaddingDefect: "a base64 part is badly padded",
}

# Header objects are built only for the headers read, with the classes built once (as the MIME
# builder does): that halves the cost of reading a typical message.
_parser = BytesParser(policy=default.clone(header_factory=CachedHeaderRegistry()))


class UnacceptableMessage(ValueError):
    """A submitted message Mailhub cannot accept; the message says why, for the SMTP reply."""


def submission_draft(*, content: bytes, mail_from: str, rcpt_tos: Sequence[str]) -> MessageDraft:
    """The validated draft of a message submitted as ``content`` (RFC 5322 bytes) with this
    envelope, or ``UnacceptableMessage`` saying why not (a validation error, as the API words
    it, or what keeps the message from being read)."""
    try:
        payload, text, attachments = _payload(content, mail_from=mail_from, rcpt_tos=rcpt_tos)
    except UnacceptableMessage:
        raise
    except Exception as exc:
        # The email library reads hostile input with many kinds of exceptions of its own (and
        # a RecursionError for deep nesting): whichever, this message cannot be read.
        logger.info("submitted message not parsed", exc_info=True)
        raise UnacceptableMessage(
            f"Cannot parse the message ({type(exc).__name__}: {exc})"
        ) from None
    serializer = MessageCreateSerializer(data=payload)
    if not serializer.is_valid():
        raise UnacceptableMessage(validation_summary(serializer.errors))
    if problem := attachments_problem(attachments):
        raise UnacceptableMessage(problem)
    return dataclasses.replace(serializer.to_draft(), text=text, attachments=attachments)


def _payload(
    content: bytes, *, mail_from: str, rcpt_tos: Sequence[str]
) -> tuple[dict[str, Any], str, list[AttachmentDraft]]:
    """The serializer's input, the text body as the message has it, and the attachments."""
    message = _parser.parsebytes(content)
    assert isinstance(message, EmailMessage)  # what the default policy's factory makes
    _refuse_defects(message)
    names = [name.lower() for name in message]
    for name in _SINGLE:
        if names.count(name) > 1:
            raise UnacceptableMessage(f"{_title(name)}: The header is given more than once.")
    shown: dict[str, tuple[str, str]] = {}  # address -> (kind, display name), To before Cc
    for kind in ("to", "cc"):
        for header in message.get_all(kind, []):
            for address in header.addresses:
                shown.setdefault(address.addr_spec.lower(), (kind, _text(address.display_name)))
    payload: dict[str, Any] = {"from": _sender(message, mail_from), "to": [], "cc": [], "bcc": []}
    for recipient in dict.fromkeys(rcpt_tos):
        kind, name = shown.get(recipient.lower(), ("bcc", ""))
        payload[kind].append(_mailbox(name, recipient))
    if "reply-to" in message:
        payload["reply_to"] = [
            _mailbox(_text(a.display_name), a.addr_spec) for a in message["reply-to"].addresses
        ]
    if "subject" in message:
        payload["subject"] = _text(str(message["subject"]))
    if PRIORITY_HEADER in message:
        payload["priority"] = str(message[PRIORITY_HEADER]).strip().lower()
    if TAGS_HEADER in message:
        tags = str(message[TAGS_HEADER]).split(",")
        payload["tags"] = [tag.strip() for tag in tags if tag.strip()]
    if METADATA_HEADER in message:
        payload["metadata"] = _metadata(str(message[METADATA_HEADER]))
    payload["headers"] = _custom_headers(message)
    text, html, attachments = _bodies(message)
    # The API insists on a body; mail may have none (a scanner's attachment, a cron job's ping).
    payload["text"] = text if text or html else " "
    payload["html"] = html
    return payload, text, attachments


def _refuse_defects(part: EmailMessage) -> None:
    for defect in part.defects:
        for kind, reason in _FATAL_DEFECTS.items():
            if isinstance(defect, kind):
                raise UnacceptableMessage(f"Cannot parse the message: {reason}.")


def _title(name: str) -> str:
    return "-".join(word.capitalize() for word in name.split("-"))


def _text(value: str) -> str:
    """Header text as a reader sees it: 8-bit bytes sent as they are (the parser keeps them as
    surrogate escapes) read as UTF-8, what is not UTF-8 as U+FFFD, as the library itself does
    for an unstructured header."""
    if value.isascii() or not any("\udc80" <= char <= "\udcff" for char in value):
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _mailbox(name: str, address: str) -> str:
    """``"Name" <address>`` as the API's address field takes it: quoted, never encoded (its
    parser keeps an encoded word as it stands)."""
    if not name:
        return address
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}" <{address}>'


def _sender(message: EmailMessage, mail_from: str) -> str:
    if "from" not in message:
        return mail_from
    addresses = message["from"].addresses
    if len(addresses) != 1:
        raise UnacceptableMessage(f"From: One sender address is required; {len(addresses)} given.")
    return _mailbox(_text(addresses[0].display_name), addresses[0].addr_spec)


def _metadata(value: str) -> dict[str, Any]:
    try:
        metadata = json.loads(value)
    except ValueError:
        metadata = None
    if not isinstance(metadata, dict):
        raise UnacceptableMessage('X-Mailhub-Metadata: A JSON object is required: {"a": "b"}.')
    return metadata


def _custom_headers(message: EmailMessage) -> dict[str, str]:
    headers: dict[str, str] = {}
    seen: set[str] = set()
    for name, raw in message.raw_items():
        lowered = name.lower()
        if lowered in _NOT_CUSTOM:
            continue
        if lowered in seen:
            raise UnacceptableMessage(
                f"headers.{name}: Header given twice (names are case-insensitive)."
            )
        seen.add(lowered)
        headers[name] = _text(str(message.policy.header_fetch_parse(name, raw)))
    return headers


def _bodies(message: EmailMessage) -> tuple[str, str, list[AttachmentDraft]]:
    text: str | None = None
    html: str | None = None
    attachments: list[AttachmentDraft] = []
    for part in _leaves(message, depth=0):
        content_type = part.get_content_type()
        disposition = part.get_content_disposition()
        is_body = disposition != "attachment" and not part.get_filename()
        if is_body and content_type == "text/plain" and text is None:
            text = _decoded_text(part)
        elif is_body and content_type == "text/html" and html is None:
            html = _decoded_text(part)
        else:
            attachments.append(_attachment(part, inline=disposition != "attachment"))
    return text or "", html or "", attachments


def _leaves(part: EmailMessage, *, depth: int) -> Iterator[EmailMessage]:
    """The parts that hold content, in order; a message/rfc822 part is one of them (its own
    parts are its, not this message's)."""
    _refuse_defects(part)
    if not (part.is_multipart() and part.get_content_maintype() == "multipart"):
        yield part
        return
    if depth >= MAX_NESTING:
        raise UnacceptableMessage(f"Cannot parse the message: nested deeper than {MAX_NESTING}.")
    for child in part.iter_parts():
        assert isinstance(child, EmailMessage)
        yield from _leaves(child, depth=depth + 1)


def _decoded(part: EmailMessage) -> bytes:
    content = part.get_payload(decode=True)
    _refuse_defects(part)  # base64 damage is found while decoding
    if isinstance(content, bytes):
        return content
    # A message/* part: the enclosed message, as it is written.
    enclosed = part.get_payload()
    if isinstance(enclosed, list):
        return b"".join(
            inner.as_bytes()
            if isinstance(inner, EmailMessage)
            else str(inner).encode("utf-8", "surrogateescape")
            for inner in enclosed
        )
    return str(enclosed).encode("utf-8", "surrogateescape")


def _decoded_text(part: EmailMessage) -> str:
    """A text part in its charset; text sent without one is US-ASCII, or else UTF-8, as most
    software writes it. A charset Python does not know, or bytes that are not in it, are
    refused: a body is never sent with characters replaced."""
    content = _decoded(part)
    charset = part.get_content_charset() or "us-ascii"
    kind = part.get_content_type()
    try:
        return _newlines(content.decode(charset))
    except LookupError:  # no such codec, or one that is not a text encoding (base64_codec)
        raise UnacceptableMessage(f"The {kind} part's charset {charset!r} is unknown.") from None
    except UnicodeDecodeError:
        if charset in ("us-ascii", "ascii"):
            try:
                return _newlines(content.decode("utf-8"))
            except UnicodeDecodeError:
                pass
        raise UnacceptableMessage(f"The {kind} part is not valid {charset}.") from None


def _newlines(text: str) -> str:
    """Lines end in CRLF on the wire and in "\n" in Mailhub, as in the API's bodies."""
    return text.replace("\r\n", "\n")


def _attachment(part: EmailMessage, *, inline: bool) -> AttachmentDraft:
    content_id = str(part.get("content-id", "")).strip().strip("<>") if inline else ""
    return AttachmentDraft(
        filename=_text(part.get_filename() or ""),
        content_type=part.get_content_type(),
        content=_decoded(part),
        content_id=_text(content_id),
    )
