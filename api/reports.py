"""Reports that come back by mail, read from the bytes of a received message: delivery status
notifications (bounces) and feedback-loop complaints. Pure: no database, no settings.

- **DSN** (RFC 3464): a ``message/delivery-status`` part (or RFC 6533's
  ``message/global-delivery-status``), normally inside ``multipart/report;
  report-type=delivery-status``: one block of fields per recipient (``Action``, ``Status``,
  ``Final-Recipient``, ``Original-Recipient``, ``Diagnostic-Code``), and beside it, when the
  reporting server includes it, the original message (``message/rfc822``) or its header
  (``text/rfc822-headers``). Postfix, Exim with DSNs, Exchange and Office 365, Gmail and
  Yahoo send these today.
- **Other bounces**: plain-text forms older or odder servers send (Exim's "This message was
  created automatically by mail delivery software", qmail's QSBMF, old Exchange and Yahoo
  formats...), recognised by flufl.bounce's detectors (GNU Mailman's), which name the failed
  addresses and whether they failed for good; the reason is the text around each address.
- **ARF** (RFC 5965): a ``message/feedback-report`` part (``Feedback-Type``,
  ``Original-Mail-From``, ``Original-Rcpt-To``, ``Arrival-Date``...) and the message complained
  about, as a whole message or its header.

``parse_reports`` never raises: a message too large, nested too deep or too unreadable yields
what could be read of it, or nothing. Every string it returns is one line of printable text,
of bounded length, so it can go into a log line, a database column or a webhook as is.
"""

from __future__ import annotations

import base64
import binascii
import email
import logging
import quopri
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

import flufl.bounce
from flufl.bounce import _scan as flufl_scan

logger = logging.getLogger(__name__)

#: Larger messages are not read (the bounces server refuses them before this).
MAX_REPORT_BYTES = 10 * 1024 * 1024
#: MIME parts nested deeper than this are not looked at.
MAX_DEPTH = 8
#: At most this many MIME parts of a message are looked at.
MAX_PARTS = 200
#: At most this many recipients of one DSN are read.
MAX_RECIPIENTS = 100
#: The longest string a report holds (a diagnostic); addresses and fields are shorter.
MAX_TEXT = 1000
_MAX_FIELD = 320

# The actions of RFC 3464 section 2.3.3.
FAILED, DELAYED, DELIVERED, RELAYED, EXPANDED = (
    "failed",
    "delayed",
    "delivered",
    "relayed",
    "expanded",
)
ACTIONS = frozenset({FAILED, DELAYED, DELIVERED, RELAYED, EXPANDED})

#: Feedback types (RFC 5965 section 7.3) that say a recipient did not want the mail.
#: `not-spam`, `auth-failure` (RFC 6591) and `other` say nothing of the kind.
COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus"})

_STATUS_PARTS = {"message/delivery-status", "message/global-delivery-status"}
_FEEDBACK_PART = "message/feedback-report"
_ORIGINAL_PARTS = {"message/rfc822", "message/global"}
_ORIGINAL_HEADER_PARTS = {"text/rfc822-headers", "message/global-headers"}

# An enhanced status code (RFC 3463) standing alone: not a piece of an IP address or a version.
_ENHANCED = re.compile(r"(?<![\w.])([245])\.([0-9]{1,3})\.([0-9]{1,3})(?!\.?[0-9])", re.ASCII)
_STATUS_FIELD = re.compile(r"\s*([245])\.([0-9]{1,3})\.([0-9]{1,3})(?![0-9])", re.ASCII)
_SMTP_CODE = re.compile(r"(?<![\w.])([245][0-9][0-9])(?=[ -]|$)", re.ASCII)
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|auto:|out of (the )?office|vacation|"
    r"abwesenheit|r[ée]ponse automatique)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RecipientStatus:
    """What a report says of one recipient."""

    action: str  # one of ACTIONS, or "" when the report named none of them
    status: str  # an enhanced status code "x.y.z" (class 2, 4 or 5), or ""
    final_recipient: str
    original_recipient: str
    diagnostic: str  # the remote server's words, e.g. "smtp; 550 5.1.1 user unknown"
    remote_mta: str = ""

    @property
    def hard(self) -> bool:
        """A permanent failure: the address will not take mail (``failed`` with a 5.x.x)."""
        return self.action == FAILED and self.status.startswith("5.")

    @property
    def smtp_code(self) -> int | None:
        """The remote server's reply code quoted in the diagnostic, when it agrees with the
        status's class."""
        found = _SMTP_CODE.search(self.diagnostic.partition(";")[2] or self.diagnostic)
        if found is None or (self.status and found[1][0] != self.status[0]):
            return None
        return int(found[1])

    def is_about(self, address: str) -> bool:
        """Does this status name ``address`` (case-insensitively) as its final or original
        recipient?"""
        wanted = address.strip().lower()
        return bool(wanted) and wanted in (
            self.final_recipient.lower(),
            self.original_recipient.lower(),
        )


@dataclass(frozen=True)
class OriginalMessage:
    """What a report quotes of the message it is about: its header, at least in part."""

    return_path: str  # the envelope sender the final server recorded
    message_id: str
    sender: str  # From:
    recipient: str  # To:


@dataclass(frozen=True)
class DeliveryReport:
    """A bounce: a DSN, or a plain-text bounce read by the heuristics (``format``)."""

    format: str  # "dsn" or "heuristic"
    reporting_mta: str
    recipients: tuple[RecipientStatus, ...]
    original: OriginalMessage | None


@dataclass(frozen=True)
class FeedbackReport:
    """A complaint or other feedback (ARF)."""

    feedback_type: str  # lower case: "abuse", "fraud", "not-spam"...
    user_agent: str
    original_mail_from: str
    original_rcpt_to: tuple[str, ...]
    arrival_date: str
    reporting_mta: str
    source_ip: str
    original: OriginalMessage | None

    @property
    def complaint(self) -> bool:
        """Does the report say the recipient did not want the mail?"""
        return self.feedback_type in COMPLAINT_TYPES


Report = DeliveryReport | FeedbackReport


def parse_reports(data: bytes, *, max_bytes: int = MAX_REPORT_BYTES) -> list[Report]:
    """The reports ``data`` (one received message, as received) holds; [] if none. Never
    raises."""
    if not isinstance(data, bytes | bytearray) or len(data) > max_bytes:
        return []
    try:
        message = email.message_from_bytes(bytes(data), policy=compat32)
        reports = _structured_reports(message)
        if not reports and not _is_auto_reply(message):
            reports = _heuristic_reports(message)
        return reports
    except Exception:  # RecursionError on absurd nesting, or a bug in a parser: never fatal
        logger.warning("could not read a report (%d bytes)", len(data), exc_info=True)
        return []


# -- DSN and ARF: the machine-readable parts ------------------------------------------------


def _structured_reports(message: Message) -> list[Report]:
    reports: list[Report] = []
    for part, parent in _walk(message):
        kind = part.get_content_type()
        if kind in _STATUS_PARTS:
            reports.append(_delivery_report(part, _original_beside(parent)))
        elif kind == _FEEDBACK_PART:
            reports.append(_feedback_report(part, _original_beside(parent)))
    return reports


def _walk(message: Message) -> Iterator[tuple[Message, Message | None]]:
    """Each part and its parent, depth first, within the limits; never into a quoted message
    (a bounce of a bounce is about the first bounce, not about our mail)."""
    stack: list[tuple[Message, Message | None, int]] = [(message, None, 0)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, parent, depth = stack.pop()
        seen += 1
        yield part, parent
        kind = part.get_content_type()
        if depth >= MAX_DEPTH or not part.is_multipart() or kind.startswith("message/"):
            continue
        children = part.get_payload()
        if isinstance(children, list):
            stack.extend(
                (child, part, depth + 1)
                for child in reversed(children[:MAX_PARTS])
                if isinstance(child, Message)
            )


def _field_blocks(part: Message) -> list[dict[str, list[str]]]:
    """The blocks of ``Name: value`` fields of a status or feedback part, names in lower case.

    The email package parses a message/delivery-status body as a list of header blocks, other
    message/* types as one message whose header is the first block; a transfer-encoded or
    unparsed body is read here."""
    blocks: list[dict[str, list[str]]] = []
    payload = part.get_payload()
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if isinstance(payload, list) and encoding in ("base64", "quoted-printable"):
        # Parsed as fields before it was decoded: put the text together again and decode it.
        text = "\n\n".join(_serialized(sub) for sub in payload if isinstance(sub, Message))
        blocks = _blocks_of_text(_decoded(text, encoding).decode("utf-8", "replace"))
    elif isinstance(payload, list):
        for sub in payload[: MAX_RECIPIENTS + 1]:
            if not isinstance(sub, Message):
                continue
            blocks.append(_block(sub.items()))
            rest = None if sub.is_multipart() else sub.get_payload(decode=True)
            if isinstance(rest, bytes) and rest.strip():  # as bytes: UTF-8 stays UTF-8
                blocks.extend(_blocks_of_text(rest.decode("utf-8", "replace")))
    else:
        raw = part.get_payload(decode=True)
        if isinstance(raw, bytes):
            blocks = _blocks_of_text(raw.decode("utf-8", "replace"))
    return [block for block in blocks if block][: MAX_RECIPIENTS + 1]


def _decoded(text: str, encoding: str) -> bytes:
    if encoding == "quoted-printable":
        return quopri.decodestring(text.encode("utf-8", "surrogateescape"))
    letters = re.sub(r"[^A-Za-z0-9+/]", "", text)
    try:
        return base64.b64decode(letters[: len(letters) - len(letters) % 4])
    except binascii.Error:
        return b""


def _serialized(message: Message) -> str:
    body = None if message.is_multipart() else message.get_payload(decode=True)
    header = "".join(f"{name}:{value}\n" for name, value in message.items())
    if not isinstance(body, bytes) or not body:
        return header
    return header + "\n" + body.decode("utf-8", "surrogateescape")


def _blocks_of_text(text: str) -> list[dict[str, list[str]]]:
    blocks: list[dict[str, list[str]]] = []
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", text.replace("\r\n", "\n"))[: MAX_RECIPIENTS + 1]:
        items: list[tuple[str, str]] = []
        for line in chunk.split("\n"):
            if line[:1] in (" ", "\t") and items:  # a folded line continues the field
                items[-1] = (items[-1][0], items[-1][1] + " " + line.strip())
            elif ":" in line:
                name, _, value = line.partition(":")
                items.append((name, value))
        blocks.append(_block(items))
    return blocks


def _block(items: Sequence[tuple[str, object]]) -> dict[str, list[str]]:
    block: dict[str, list[str]] = {}
    for name, value in items[:50]:
        block.setdefault(name.strip().lower(), []).append(_utf8(str(value)))
    return block


def _utf8(value: str) -> str:
    """A header value the email package read from bytes: 8-bit bytes in it (UTF-8 in reports
    of RFC 6533, or anything) come back as surrogates; read them as UTF-8."""
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte: clean_text replaces it
        return value


def _first(block: dict[str, list[str]], name: str, limit: int = _MAX_FIELD) -> str:
    return clean_text(block.get(name, [""])[0], limit)


def _delivery_report(part: Message, original: OriginalMessage | None) -> DeliveryReport:
    blocks = _field_blocks(part)
    per_message = blocks[0] if blocks else {}
    recipients = tuple(
        _recipient_status(block)
        for block in blocks  # the per-message block names no recipient; some servers omit it
        if "final-recipient" in block or "original-recipient" in block
    )
    return DeliveryReport(
        format="dsn",
        reporting_mta=_typed_value(_first(per_message, "reporting-mta")),
        recipients=recipients,
        original=original,
    )


def _recipient_status(block: dict[str, list[str]]) -> RecipientStatus:
    action = _first(block, "action").lower().split(" ")[0].split("(")[0]
    diagnostic = _first(block, "diagnostic-code", MAX_TEXT)
    status_field = _STATUS_FIELD.match(_first(block, "status"))
    status = ".".join(status_field.groups()) if status_field else _status_in(diagnostic)
    if not status and "status" not in block:
        # No Status at all (RFC 3464 requires one): RFC 3463's "other undefined status" of the
        # class the action says. A Status that cannot be read leaves it unknown: no hard bounce.
        status = {FAILED: "5.0.0", DELAYED: "4.0.0"}.get(action, "")
    return RecipientStatus(
        action=action if action in ACTIONS else "",
        status=status,
        final_recipient=address_of(_first(block, "final-recipient")),
        original_recipient=address_of(_first(block, "original-recipient")),
        diagnostic=diagnostic,
        remote_mta=_typed_value(_first(block, "remote-mta")),
    )


def _feedback_report(part: Message, original: OriginalMessage | None) -> FeedbackReport:
    fields: dict[str, list[str]] = {}
    for block in _field_blocks(part):
        for name, values in block.items():
            fields.setdefault(name, []).extend(values)
    return FeedbackReport(
        feedback_type=_first(fields, "feedback-type").lower(),
        user_agent=_first(fields, "user-agent"),
        original_mail_from=address_of(_first(fields, "original-mail-from")),
        original_rcpt_to=tuple(
            address
            for value in fields.get("original-rcpt-to", [])[:MAX_RECIPIENTS]
            if (address := address_of(clean_text(value, _MAX_FIELD)))
        ),
        arrival_date=_first(fields, "arrival-date") or _first(fields, "received-date"),
        reporting_mta=_typed_value(_first(fields, "reporting-mta")),
        source_ip=_first(fields, "source-ip"),
        original=original,
    )


def _original_beside(parent: Message | None) -> OriginalMessage | None:
    """The quoted original message next to a status part, if the report includes it."""
    if parent is None:
        return None
    children = parent.get_payload()
    if not isinstance(children, list):
        return None
    for child in children[:MAX_PARTS]:
        if not isinstance(child, Message):
            continue
        kind = child.get_content_type()
        header: Message | None = None
        if kind in _ORIGINAL_PARTS:
            inner = child.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                header = inner[0]
        elif kind in _ORIGINAL_HEADER_PARTS:
            raw = child.get_payload(decode=True)
            if isinstance(raw, bytes):
                header = BytesHeaderParser(policy=compat32).parsebytes(raw)
        if header is not None:
            return OriginalMessage(
                return_path=address_of(_header(header, "Return-Path")),
                message_id=_header(header, "Message-ID"),
                sender=_header(header, "From"),
                recipient=_header(header, "To"),
            )
    return None


def _header(message: Message, name: str) -> str:
    return clean_text(_utf8(str(message.get(name, ""))))


# -- plain-text bounces ---------------------------------------------------------------------


def _is_auto_reply(message: Message) -> bool:
    """An out-of-office or other automatic answer (RFC 3834 and common markers): not a bounce,
    whatever words it uses."""
    if any(message.get(name) for name in ("X-Autoreply", "X-Autorespond", "X-Vacation")):
        return True
    if str(message.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    return bool(_AUTO_REPLY_SUBJECT.match(clean_text(str(message.get("Subject", "")))))


def _heuristic_reports(message: Message) -> list[Report]:
    temporary, permanent = _detected_failures(message)
    if not temporary and not permanent:
        return []
    text = _readable_text(message)
    recipients = []
    for raw, action in [*((a, FAILED) for a in permanent), *((a, DELAYED) for a in temporary)]:
        address = address_of(raw.decode("ascii", "replace"))
        if not address:
            continue
        diagnostic = _paragraph_about(text, address)
        status = _status_in(diagnostic)
        if not status and (line := _line_with_status(text)):
            # Gmail's old form gives the reason a few paragraphs below the address.
            diagnostic = clean_text(f"{diagnostic} {line}", MAX_TEXT)
            status = _status_in(line)
        if not status or status.startswith("2."):
            status = "5.0.0" if action == FAILED else "4.0.0"
        # A failure the detector calls permanent with a 4.x.x reply (a server that gave up after
        # days of "try later") is no hard bounce, as in a DSN: the address may be fine.
        recipients.append(
            RecipientStatus(
                action=action,
                status=status,
                final_recipient=address,
                original_recipient="",
                diagnostic=diagnostic,
            )
        )
    if not recipients:
        return []
    recipients.sort(key=lambda status: status.final_recipient)
    return [
        DeliveryReport(
            format="heuristic",
            reporting_mta="",
            recipients=tuple(recipients[:MAX_RECIPIENTS]),
            original=None,
        )
    ]


def _detected_failures(message: Message) -> tuple[frozenset[bytes], frozenset[bytes]]:
    """flufl.bounce's ``all_failures``: its detectors in its order, the first that finds
    something answering. Run here one by one, because its own loop gives up on the first
    detector that raises (some do, on a From: without an address), skipping the rest."""
    detectors = getattr(flufl_scan, "_DETECTORS", None)
    if not isinstance(detectors, list):  # a flufl.bounce that moved its list: its own loop
        return flufl.bounce.all_failures(message)
    for detector in detectors:
        try:
            temporary, permanent = detector().process(message)
        except Exception as error:
            logger.debug("bounce detector %s failed: %r", detector.__name__, error)
            continue
        if temporary or permanent:
            return frozenset(temporary), frozenset(permanent)
    return frozenset(), frozenset()


def _readable_text(message: Message) -> str:
    """The first text/plain part that is not a quoted message, decoded (bounded)."""
    for part, _ in _walk(message):
        if part.get_content_type() == "text/plain" and not part.is_multipart():
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                return _text_in_charset(raw[:65536], part)
    return ""


def _text_in_charset(raw: bytes, part: Message) -> str:
    """``raw`` decoded in the charset ``part`` names, or as UTF-8 where it names none that
    decodes text: unknown to Python (LookupError), a bytes-to-bytes codec such as ``base64``
    (LookupError too), a codec that takes no "replace" such as ``idna``, or a name holding a NUL
    (ValueError, also raised by ``get_content_charset`` for an RFC 2231 one)."""
    try:
        return raw.decode(part.get_content_charset() or "utf-8", "replace")
    except (LookupError, ValueError):  # UnicodeError is a ValueError
        return raw.decode("utf-8", "replace")


def _paragraph_about(text: str, address: str) -> str:
    """The paragraph of ``text`` that says why ``address`` failed: of those that name it (from
    its line to the next blank one, where Exim, Postfix, qmail, Yahoo and old Exchange put the
    reason), the first that quotes a reply code, else the last (a summary at the top names the
    address too)."""
    lines = text.replace("\r\n", "\n").split("\n")
    wanted = address.lower()
    paragraphs = []
    for number, line in enumerate(lines):
        if wanted not in line.lower():
            continue
        paragraph = [line]
        for following in lines[number + 1 : number + 12]:
            if following.lstrip().startswith("---"):  # the quoted message begins
                break
            if not following.strip():
                if len(paragraph) > 1:
                    break
                continue  # Gmail puts a blank line between the address and the reason
            paragraph.append(following)
        joined = clean_text(" ".join(paragraph), MAX_TEXT)
        if _ENHANCED.search(joined) or _SMTP_CODE.search(joined):
            return joined
        paragraphs.append(joined)
        if len(paragraphs) >= 20:
            break
    return paragraphs[-1] if paragraphs else ""


# -- small readers ----------------------------------------------------------------------------


def _line_with_status(text: str) -> str:
    found = _ENHANCED.search(text)
    if found is None:
        return ""
    start = text.rfind("\n", 0, found.start()) + 1
    end = text.find("\n", found.end())
    return text[start : end if end >= 0 else len(text)]


def _status_in(text: str) -> str:
    found = _ENHANCED.search(text)
    return ".".join(found.groups()) if found else ""


def _typed_value(value: str) -> str:
    """``dns; mx.example.com`` -> ``mx.example.com``."""
    kind, semicolon, rest = value.partition(";")
    return (rest if semicolon else kind).strip()


def address_of(value: str) -> str:
    """The address of a recipient field (``rfc822; <Ann@Example.com>`` -> ``Ann@Example.com``),
    or of a header such as Return-Path; "" when it holds none."""
    value = _typed_value(clean_text(value))
    start, end = value.find("<"), value.rfind(">")
    if 0 <= start < end:
        value = value[start + 1 : end]
    value = value.strip().strip("<>").strip()
    if not value or any(char.isspace() for char in value) or len(value) > _MAX_FIELD:
        return ""
    return value


def clean_text(value: str, limit: int = _MAX_FIELD) -> str:
    """``value`` as one line of printable text, at most ``limit`` characters: control and
    format characters, line and paragraph separators become spaces, surrogates (bytes that were
    not text) become U+FFFD, runs of spaces one."""
    value = value[: limit * 4]
    chars = []
    for char in value:
        category = unicodedata.category(char)
        if category == "Cs":
            chars.append("\ufffd")
        elif category in ("Cc", "Cf", "Zl", "Zp", "Co", "Cn"):
            chars.append(" ")
        else:
            chars.append(char)
    # The cut comes after the join, so it may end on a space.
    return " ".join("".join(chars).split())[:limit].rstrip()
