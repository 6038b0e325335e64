"""Builds the RFC 5322 bytes of a message, once per message, for all its recipients."""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import SMTP, default
from email.utils import format_datetime, formataddr, parseaddr
from typing import TypedDict

from deliveries.header_text import HeaderTextError, check_header_text
from deliveries.models import Attachment, Delivery, Message


class CachedHeaderRegistry(HeaderRegistry):
    """The standard registry builds a new header class on every lookup (``type(...)``), which
    made it the largest cost of sending; the classes never change, so build each once."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


#: SMTP's: 78 (the policy's attribute may be None, meaning no folding; never so here).
_MAX_LINE_LENGTH = 78
_HEADERS = CachedHeaderRegistry()
_POLICY = SMTP.clone(header_factory=_HEADERS, max_line_length=_MAX_LINE_LENGTH)
#: Reads headers back as a recipient's software would.
_READER = BytesHeaderParser(policy=default)


def _display(name: str, address: str) -> str:
    return formataddr((name, address)) if name else address


_CRLF = b"\r\n"
# Values the library writes out exactly as given when their header fits on one line; anything
# else (and anything holding an RFC 2047 encoded word, "=?") goes through its parser and folder.
#: Unstructured: printable ASCII words separated by single spaces.
_PLAIN_TEXT = r"[!-~]+(?: [!-~]+)*"
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR_SPEC = rf"{_ATOM}(?:\.{_ATOM})*@{_ATOM}(?:\.{_ATOM})*"
#: Addresses: bare, or after a display name of atoms (one that needs quoting is not plain).
_PLAIN_ADDRESS = rf"(?:{_ATOM}(?: {_ATOM})* <{_ADDR_SPEC}>|{_ADDR_SPEC})"
_WEEKDAY = "Mon|Tue|Wed|Thu|Fri|Sat|Sun"
_MONTH = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_PLAIN = {
    name: re.compile(pattern)
    for name, pattern in {
        "from": rf"{_PLAIN_ADDRESS}(?:, {_PLAIN_ADDRESS})*",
        "to": rf"{_PLAIN_ADDRESS}(?:, {_PLAIN_ADDRESS})*",
        "cc": rf"{_PLAIN_ADDRESS}(?:, {_PLAIN_ADDRESS})*",
        "reply-to": rf"{_PLAIN_ADDRESS}(?:, {_PLAIN_ADDRESS})*",
        "subject": _PLAIN_TEXT,
        # As format_datetime() writes it; the library parses it and writes it again the same.
        "date": rf"(?:{_WEEKDAY}), \d\d (?:{_MONTH}) \d{{4}} \d\d:\d\d:\d\d [+-]\d{{4}}",
        "message-id": rf"<{_ADDR_SPEC}>",
    }.items()
}
_PLAIN_UNSTRUCTURED = re.compile(_PLAIN_TEXT)
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext
#: One header field as written: its name, and folded continuation lines that each hold more than
#: white space (a blank or white-space-only line would end the header block for some readers).
_ONE_FIELD = re.compile(rb"([!-9;-~]+):[^\r\n]*(?:\r\n[ \t]+[^\r\n \t][^\r\n]*)*\r\n")
#: The content headers of a single 7-bit text part, in the order ``set_content`` writes them.
_SEVEN_BIT_TEXT = (
    'Content-Type: text/{subtype}; charset="utf-8"\r\n'
    "Content-Transfer-Encoding: 7bit\r\n"
    "MIME-Version: 1.0\r\n"
)


def build_mime(
    message: Message, deliveries: Iterable[Delivery], attachments: Iterable[Attachment] = ()
) -> bytes:
    """The message as it goes on the wire. Bcc recipients get the mail but are not in a header.

    Built once per message and sent to all its recipients in one transaction. The bytes are the
    ones ``EmailMessage.as_bytes()`` would give (the unit tests compare them), but plain headers
    and a plain 7-bit text body are written directly: parsing every header into the library's
    header objects and folding them back was most of a worker's CPU per message.

    The last line of defence against header injection: every value is held to the header rule
    (``deliveries.header_text``) before the library sees it, and every header comes out as
    exactly the one field it was meant to be, or ``HeaderTextError`` (a ValueError) is raised.
    """
    deliveries = list(deliveries)
    # Each header is written as soon as it is known, in the library's order, so that a value it
    # refuses fails here the same way.
    sender = message.sender
    sender_names = () if _is_plain("From", sender) else [_sender_name(sender)]
    lines = [address_field("From", sender, names=sender_names)]
    for header, kind in (("To", Delivery.Kind.TO), ("Cc", Delivery.Kind.CC)):
        shown = [d for d in deliveries if d.kind == kind]
        if shown:
            value = ", ".join(_display(d.name, d.address) for d in shown)
            lines.append(address_field(header, value, names=[d.name for d in shown]))
    if message.reply_to:
        lines.append(header_field("Reply-To", ", ".join(message.reply_to)))  # addresses alone
    lines.append(header_field("Subject", message.subject))
    lines.append(header_field("Date", format_datetime(message.created_at)))
    lines.append(header_field("Message-ID", message.message_id))
    content_headers, body = _content(message, list(attachments))
    lines.append(content_headers)
    # Custom headers last, as before: after the content headers set_content() writes.
    _refuse_repeated_unique_headers(b"".join(lines), list(message.headers))
    lines.extend(header_field(name, value) for name, value in message.headers.items())
    return b"".join([*lines, _CRLF, body])


def header_field(name: str, value: str) -> bytes:
    """One header field as ``build_mime`` writes it, CRLF-terminated, or ``HeaderTextError``
    for a value the header rule refuses or the library cannot write (which is why validation
    builds header-bound values the library could trip on once too)."""
    if _is_plain(name, value):  # printable ASCII on one line: nothing to check
        return f"{name}: {value}\r\n".encode("ascii")
    check_header_text(value, what=f"the {name} header")
    # Encoded words, quoting, folding: the library's. On some garbage it fails with errors as
    # varied as IndexError and AttributeError; all of them say the same: not writable.
    try:
        folded = _POLICY.fold_binary(name, _POLICY.header_store_parse(name, value)[1])
    except Exception as exc:
        raise HeaderTextError(
            f"the {name} header cannot be written ({type(exc).__name__}: {exc})"
        ) from exc
    return _one_field(name, folded)


def address_field(name: str, value: str, *, names: Iterable[str]) -> bytes:
    """``header_field`` for an address header, whose addresses must read back as written.

    The library re-parses display names and can write one back unquoted with its specials (a
    non-ASCII word followed by ``<>``): a reader would then see other addresses than the ones
    Mailhub sends to, or the same addresses under other names. Where one of the display names
    (``names``) could trip it, the header is read back and compared, addresses and the words of
    their names (a third of a millisecond, so not for every non-ASCII name).
    """
    folded = header_field(name, value)
    if any(map(display_name_may_misfold, names)):
        try:
            wanted = _mailboxes(_HEADERS(name, value))
            same = _mailboxes(_READER.parsebytes(folded + _CRLF)[name]) == wanted
        except Exception:  # the library fails to read some garbage with more than ValueError
            same = False
        if not same:
            raise HeaderTextError(
                f"the {name} header would not read back as the same addresses and names"
            )
    return folded


#: RFC 5322's specials: a display name holding one must be quoted.
_SPECIALS = frozenset('()<>[]:;@\\,."')
#: The longest ASCII name whose quoted form always fits on a folded line of its own (a space,
#: the quotes and every character escaped: 1 + 2 + 2 * 37 = 77 of 78), which the library then
#: writes whole; 38 quotes in a row are split.
_LONGEST_WHOLE_QUOTED_NAME = (_MAX_LINE_LENGTH - 3) // 2


def display_name_may_misfold(name: str) -> bool:
    """Whether the library could write this display name so that it reads back otherwise (or
    fail on it): only a name with an encoded word, non-ASCII with specials, or ASCII with specials
    too long for its quoted form to fit on a line has been seen to (the library splits that
    quoted string and drops its quotes: ``"Ann, evil@evil.test ..."`` reads as two addresses).
    The property tests build arbitrary names to hold this to account."""
    if "=?" in name:
        return True
    if _SPECIALS.isdisjoint(name):
        return False
    return not name.isascii() or len(name) > _LONGEST_WHOLE_QUOTED_NAME


def unstructured_may_misfold(value: str) -> bool:
    """The same for unstructured text (a subject, a custom header): only an encoded word."""
    return "=?" in value


def _sender_name(sender: str) -> str:
    """The display name of the From address, its encoded words (formataddr's) decoded."""
    name = parseaddr(sender)[0]
    # Undecodable, it keeps its "=?": read back all the same.
    return name if "=?" not in name else min(_readings(name), key=lambda text: "=?" in text)


def _mailboxes(header: object) -> list[tuple[bool, str, tuple[str, ...]]]:
    """Each address, whether it stands in a group (a display name with a colon written
    unquoted turns into one: "Name: ann@example.com;"), and the words of its display name (a
    comma written outside an encoded word is read as an empty address before the name, and the
    name loses it)."""
    return [
        (group.display_name is not None, address.addr_spec, tuple(address.display_name.split()))
        for group in getattr(header, "groups", ())
        for address in group.addresses
    ]


def _one_field(name: str, folded: bytes) -> bytes:
    """``folded`` if it is one field named ``name``; the library's folder has written decoded
    line breaks out as real ones before (CVE-2024-6923), so its output is not trusted blindly."""
    written = _ONE_FIELD.fullmatch(folded)
    if written is None or written[1].decode("ascii").lower() != name.lower():
        raise HeaderTextError(f"the {name} header would not be written as one header field")
    return folded


def _is_plain(name: str, value: str) -> bool:
    if len(name) + 2 + len(value) > _MAX_LINE_LENGTH or "=?" in value:
        return False
    if not _FIELD_NAME.fullmatch(name):
        return False
    lowered = name.lower()
    if lowered in _PLAIN:
        return _PLAIN[lowered].fullmatch(value) is not None
    # Other headers the library knows (addresses, dates, content headers) have their own parsers.
    if lowered in _HEADERS.registry:
        return False
    return _PLAIN_UNSTRUCTURED.fullmatch(value) is not None


def _refuse_repeated_unique_headers(written: bytes, custom: list[str]) -> None:
    """What ``EmailMessage.__setitem__`` refuses, e.g. a custom header named like one of ours."""
    names = [
        line.split(b":", 1)[0].decode("ascii").lower()
        for line in written.split(_CRLF)
        if line and line[:1] not in b" \t"  # not a folded header's continuation
    ]
    names += [name.lower() for name in custom]
    for name in {name for name in names if names.count(name) > 1}:
        if _HEADERS[name].max_count is not None:
            raise ValueError(f"There may be at most 1 {name} headers in a message")


def _content(message: Message, attachments: list[Attachment]) -> tuple[bytes, bytes]:
    """The content headers (folded, CRLF-terminated) and the body below them."""
    if not attachments and not (message.text_body and message.html_body):
        if message.html_body:
            plain = _seven_bit_text("html", message.html_body)
        else:
            plain = _seven_bit_text("plain", message.text_body)
        if plain is not None:
            return plain
    for part in attachments:
        _check_part_text(part.filename, part.content_type, part.content_id)
    mime = EmailMessage(policy=_POLICY)
    _set_body(mime, message, attachments)
    # A message's content headers come out the same whether other headers precede them or not.
    content_headers, body = mime.as_bytes().split(_CRLF * 2, 1)
    content_headers += _CRLF
    _refuse_stray_lines(content_headers)
    return content_headers, body


def _refuse_stray_lines(block: bytes) -> None:
    """A block of header fields that the library wrote must be nothing but whole fields."""
    at = 0
    while at < len(block):
        field = _ONE_FIELD.match(block, at)
        if field is None:
            raise HeaderTextError("the content headers would not be written as header fields")
        at = field.end()


def _seven_bit_text(subtype: str, text: str) -> tuple[bytes, bytes] | None:
    """What set_content() makes of ASCII text whose lines all fit: a 7bit part, its line breaks
    CRLF; None for any other text."""
    if not text.isascii():
        return None
    lines = text.encode("ascii").splitlines()
    if max(map(len, lines), default=0) > _MAX_LINE_LENGTH:
        return None
    headers = _SEVEN_BIT_TEXT.format(subtype=subtype).encode("ascii")
    return headers, b"".join(line + _CRLF for line in lines) or _CRLF


def _set_body(mime: EmailMessage, message: Message, attachments: list[Attachment]) -> None:
    if message.text_body and message.html_body:
        mime.set_content(message.text_body)
        mime.add_alternative(message.html_body, subtype="html")
    elif message.html_body:
        mime.set_content(message.html_body, subtype="html")
    else:
        mime.set_content(message.text_body)
    _attach(mime, attachments)


def attachment_headers(*, filename: str, content_type: str, content_id: str) -> bytes:
    """The headers of one attachment's part, as ``build_mime`` writes them (or its error)."""
    _check_part_text(filename, content_type, content_id)
    part = EmailMessage(policy=_POLICY)
    part.set_content(b"", **_part_args(filename, content_type, content_id))
    headers = part.as_bytes().split(_CRLF * 2, 1)[0] + _CRLF
    _refuse_stray_lines(headers)
    # The library quotes some decoded file names twice over (a backslash too many).
    if _READER.parsebytes(headers + _CRLF).get_filename() not in _readings(filename):
        raise HeaderTextError("an attachment's filename would not read back as given")
    return headers


def _check_part_text(filename: str, content_type: str, content_id: str) -> None:
    check_header_text(filename, what="an attachment's filename")
    check_header_text(content_type, what="an attachment's content_type")
    check_header_text(content_id, what="an attachment's content_id")


class _PartArgs(TypedDict, total=False):
    """The keyword arguments of ``set_content``/``add_attachment`` that a part uses."""

    maintype: str
    subtype: str
    filename: str
    cid: str
    disposition: str


def _part_args(filename: str, content_type: str, content_id: str) -> _PartArgs:
    """How a part is given to the library: an inline one (it has a content id) next to the
    HTML, any other as an attachment (the library's default disposition for a file name)."""
    maintype, subtype = content_type.split("/", 1)
    args: _PartArgs = {"maintype": maintype, "subtype": subtype, "filename": filename}
    if content_id:
        args |= {"cid": f"<{content_id}>", "disposition": "inline"}
    return args


def _readings(text: str) -> set[str]:
    """``text``, and what a reader makes of its encoded words."""
    try:
        return {text, str(make_header(decode_header(text)))}
    except (LookupError, UnicodeError, ValueError, HeaderParseError):
        return {text}


def _attach(mime: EmailMessage, attachments: list[Attachment]) -> None:
    inline = [a for a in attachments if a.content_id]
    regular = [a for a in attachments if not a.content_id]
    if inline:
        # Inline parts belong next to the HTML, in a multipart/related around it.
        html_part = mime.get_body(("html",))
        target = html_part if html_part is not None else mime
        for part in inline:
            target.add_related(bytes(part.content), **_part_args_of(part))
    for part in regular:
        mime.add_attachment(bytes(part.content), **_part_args_of(part))


def _part_args_of(part: Attachment) -> _PartArgs:
    return _part_args(part.filename, part.content_type, part.content_id)


def make_message_id(*, unique: str, sender_address: str) -> str:
    # The domain is what follows the last "@" even with a quoted local part ("a@b"@shop.test);
    # the address was validated on the way in, so it is not parsed again (a fifth of an accept's
    # validation cost when it was).
    _, at, domain = sender_address.rpartition("@")
    message_id = f"<{unique}@{domain if at and domain else 'mailhub.invalid'}>"
    # A domain may be nearly as long as an address (254); the column holds 255.
    return message_id if len(message_id) <= MAX_MESSAGE_ID else f"<{unique}@mailhub.invalid>"


#: The width of ``Message.message_id``.
MAX_MESSAGE_ID = 255
