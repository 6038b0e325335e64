"""A message submitted over SMTP, turned into a draft (``api.mime_intake``): what it keeps, what
it drops, what it refuses; and, for hostile header values, the property that whatever is
accepted builds into exactly the headers the submission asked for (no database)."""

from __future__ import annotations

import base64
import email
import email.policy
from email.message import EmailMessage
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from api.mime_intake import MAX_NESTING, UnacceptableMessage, submission_draft
from deliveries.header_text import header_text_problem
from mailhub.env import parse_bind
from tests.unit.test_accepted_means_buildable import (
    HEADER_BOUND,
    INTENDED,
    built,
    name_reads_as_given,
    reads_as_given,
)

ENVELOPE = {"mail_from": "bounce@shop.test", "rcpt_tos": ["ann@example.com"]}


def draft_of(content: bytes, **envelope):
    return submission_draft(content=content, **{**ENVELOPE, **envelope})


def refusal(content: bytes, **envelope) -> str:
    with pytest.raises(UnacceptableMessage) as refused:
        draft_of(content, **envelope)
    return str(refused.value)


def wire(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=email.policy.SMTP)


def a_message(**headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Shop <no-reply@shop.test>"
    message["To"] = "Ann <ann@example.com>"
    message["Subject"] = "Your code"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("Your code is 123456.\n")
    return message


# -- what becomes what ----------------------------------------------------------------------


def test_the_envelope_decides_the_recipients_and_the_headers_only_how_they_are_shown():
    message = a_message(Cc="Bob <bob@example.com>, Dan <dan@example.com>")
    draft = draft_of(
        wire(message), rcpt_tos=["ann@example.com", "BOB@example.com", "carl@example.com"]
    )
    shown = [(r.address, r.name, r.kind) for r in draft.recipients]
    # dan is named in Cc but not in the envelope: he gets nothing, and is not shown.
    assert shown == [
        ("ann@example.com", "Ann", "to"),
        ("BOB@example.com", "Bob", "cc"),
        ("carl@example.com", "", "bcc"),
    ]


def test_mailhub_headers_become_fields_and_the_headers_mailhub_writes_are_dropped():
    message = a_message(
        X_Mailhub_Priority=" High ",
        X_Mailhub_Tags="signup, , code",
        X_Mailhub_Metadata='{"user": "42", "n": 7}',
        Message_ID="<mine@shop.test>",
        Date="Mon, 01 Jan 2024 00:00:00 +0000",
        Received="from somewhere",
        DKIM_Signature="v=1; a=rsa-sha256",
        Bcc="eve@example.com",
        Reply_To="Support <help@shop.test>",
        List_Unsubscribe="<https://shop.test/u/1>",
    )
    draft = draft_of(wire(message))
    assert draft.priority == "high"
    assert list(draft.tags) == ["signup", "code"]
    assert draft.metadata == {"user": "42", "n": "7"}  # numbers are stored as strings
    assert list(draft.reply_to) == ["help@shop.test"]
    assert draft.headers == {"List-Unsubscribe": "<https://shop.test/u/1>"}
    assert draft.sender == "Shop <no-reply@shop.test>"


def test_bodies_inline_parts_and_attachments_are_told_apart():
    message = a_message()
    message.add_alternative('<p><img src="cid:logo@shop.test"></p>', subtype="html")
    message.get_payload()[1].add_related(b"PNG", "image", "png", cid="<logo@shop.test>")
    message.add_attachment(b"%PDF", "application", "pdf", filename="terms.pdf")
    message.add_attachment(a_message(), filename="forwarded.eml")  # message/rfc822
    draft = draft_of(wire(message))
    assert draft.text == "Your code is 123456.\n"  # CRLF on the wire, "\n" in Mailhub
    assert draft.html == '<p><img src="cid:logo@shop.test"></p>\n'
    parts = [(a.filename, a.content_type, a.content_id) for a in draft.attachments]
    assert parts == [
        ("", "image/png", "logo@shop.test"),
        ("terms.pdf", "application/pdf", ""),
        ("forwarded.eml", "message/rfc822", ""),
    ]
    assert b"Your code is 123456." in draft.attachments[2].content


def test_a_message_with_no_body_is_accepted_as_the_email_backend_accepts_it():
    message = EmailMessage()
    message["From"] = "scanner@shop.test"
    message["Subject"] = "Scan"
    message.add_attachment(b"%PDF", "application", "pdf", filename="scan.pdf")
    draft = draft_of(wire(message))
    assert (draft.text, draft.html, len(draft.attachments)) == ("", "", 1)


def test_without_a_from_header_the_envelope_sender_is_the_sender():
    assert draft_of(b"Subject: ping\r\n\r\nhi\r\n").sender == "bounce@shop.test"


def test_8bit_text_without_a_charset_is_read_as_utf8():
    content = "From: Jörg <j@shop.test>\r\nSubject: Grüße\r\n\r\nbis später\r\n".encode()
    draft = draft_of(content)
    sender = email.policy.default.header_factory("from", draft.sender).addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("Jörg", "j@shop.test")
    assert (draft.subject, draft.text) == ("Grüße", "bis später\n")


def test_8bit_header_text_that_is_not_utf8_reads_as_replacement_characters():
    draft = draft_of(b"From: a@shop.test\r\nSubject: caf\xe9\r\nX-Note: \xff!\r\n\r\nx\r\n")
    assert (draft.subject, draft.headers["X-Note"]) == ("caf\ufffd", "\ufffd!")


# -- what is refused, and why -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"just words, no header\r\n", "Cannot parse the message: a line of the header section"),
        (b" folded\r\nFrom: a@shop.test\r\n\r\nx", "Cannot parse the message: the message starts"),
        (
            b"From: a@shop.test\r\nContent-Type: multipart/mixed\r\n\r\nx",
            "a multipart part has no boundary",
        ),
        (
            b"From: a@shop.test\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!\r\n",
            "a base64 part holds characters base64 has not",
        ),
        (
            b"From: a@shop.test\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\xff\r\n",
            "The text/plain part is not valid utf-8.",
        ),
        (
            b"From: a@shop.test\r\nContent-Type: text/plain; charset=base64_codec\r\n\r\nx",
            "The text/plain part's charset 'base64_codec' is unknown.",
        ),
        (b"From: a@shop.test, b@shop.test\r\n\r\nx", "From: One sender address is required"),
        (b"From: a@shop.test\r\nSubject: a\r\nSubject: b\r\n\r\nx", "Subject: The header is given"),
        (b"From: a@shop.test\r\nX-A: 1\r\nX-a: 2\r\n\r\nx", "headers.X-a: Header given twice"),
        (b"From: a@shop.test\r\nX-Mailhub-Metadata: {\r\n\r\nx", "X-Mailhub-Metadata: A JSON"),
        (b"From: a@shop.test\r\nX-Mailhub-Priority: now\r\n\r\nx", 'priority: "now" is not'),
        (b"From: a@shop.test\r\n\r\nNUL \x00 here\r\n", "text: Null characters are not allowed"),
        (b"From: a@shop.test\r\nSubject: a\x0bb\r\n\r\nx", "subject: Not allowed in a mail"),
        (b"From: a@shop.test\r\nX-Long: " + b"x" * 999 + b"\r\n\r\nx", "headers.X-Long: Ensure"),
    ],
)
def test_what_cannot_be_read_or_the_api_refuses_is_refused_with_the_reason(content, reason):
    assert reason in refusal(content)


def test_nesting_deeper_than_any_client_writes_is_refused():
    content = b"From: a@shop.test\r\n"
    for depth in range(MAX_NESTING + 1):
        content += (
            f'Content-Type: multipart/mixed; boundary="b{depth}"\r\n\r\n--b{depth}\r\n'.encode()
        )
    assert f"nested deeper than {MAX_NESTING}" in refusal(content + b"\r\nx\r\n")


def test_attachments_are_held_to_the_apis_limits(settings):
    settings.MAILHUB_MAX_ATTACHMENTS = 1
    message = a_message()
    message.add_attachment(b"1", "application", "octet-stream", filename="a.bin")
    message.add_attachment(b"2", "application", "octet-stream", filename="b.bin")
    assert "At most 1 attachments per message" in refusal(wire(message))


def test_the_submission_bind_setting_is_host_and_port():
    assert parse_bind("X", "0.0.0.0:587") == ("0.0.0.0", 587)
    assert parse_bind("X", "[::1]:2587") == ("::1", 2587)
    for bad in ("587", "host:", ":587", "host:70000", "host:x"):
        with pytest.raises(Exception, match="X must be host:port"):
            parse_bind("X", bad)


# -- hostile header values: accepted means built exactly as asked -----------------------------


#: Header-bound text a message can carry: no lone surrogate, which no encoding can write.
SENDABLE = HEADER_BOUND.map(
    lambda value: "".join(c for c in value if not "\ud800" <= c <= "\udfff")
)


def encoded_word(value: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(value.encode()).decode()}?="


def raw_text(value: str) -> str:
    """``value`` as a header's raw text, minus what would end the header line itself."""
    return value.replace("\r", " ").replace("\n", " ")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sender_name=SENDABLE,
    to_name=SENDABLE,
    subject=SENDABLE,
    note=SENDABLE,
    filename=SENDABLE,
    raw=st.booleans(),
)
def test_a_hostile_submission_is_refused_or_built_into_exactly_the_headers_asked_for(
    sender_name, to_name, subject, note, filename, raw
):
    write = raw_text if raw else encoded_word
    asked_subject, asked_note = (raw_text(subject), raw_text(note)) if raw else (subject, note)
    content = (
        f"From: {encoded_word(sender_name)} <no-reply@shop.test>\r\n"
        f"To: {encoded_word(to_name)} <ann@example.com>\r\n"
        f"Subject: {write(subject)}\r\n"
        f"X-Note: {write(note)}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n'
        "\r\n--b\r\n"
        "Content-Type: text/plain\r\n\r\nBody.\r\n"
        "--b\r\n"
        "Content-Type: application/pdf\r\n"
        f"Content-Disposition: attachment; filename*=utf-8''{quote(filename, safe='')}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\neA==\r\n"
        "--b--\r\n"
    ).encode()
    try:
        draft = draft_of(content)
    except UnacceptableMessage:
        event("refused")
        return
    event("accepted")

    # The draft holds what the submission asked for, as a reader of it reads it ...
    assert reads_as_given(draft.subject, "subject", asked_subject)
    assert reads_as_given(draft.headers["X-Note"], "x-note", asked_note)
    assert list(draft.headers) == ["X-Note"]
    assert name_reads_as_given(draft.recipients[0].name, to_name)
    [attached] = draft.attachments
    # A parameter's value as a reader takes it (RFC 2231 decoded, quotes dropped).
    submitted = email.message_from_bytes(content, policy=email.policy.default)
    [pdf] = [part for part in submitted.walk() if part.get_content_type() == "application/pdf"]
    asked_filename = pdf.get_filename() or ""
    assert reads_as_given(attached.filename, "subject", asked_filename)
    # ... and it is built into exactly those headers, each reading back as the draft has it.
    parsed = email.message_from_bytes(built(draft), policy=email.policy.default)
    assert [name.lower() for name in parsed] == [
        "from", "to", "subject", "date", "message-id", "mime-version", "content-type", "x-note",
    ]  # fmt: skip
    assert reads_as_given(str(parsed["Subject"]), "subject", draft.subject)
    assert reads_as_given(str(parsed["X-Note"]), "x-note", draft.headers["X-Note"])
    assert parsed["From"].addresses[0].addr_spec == "no-reply@shop.test"
    assert [a.addr_spec for a in parsed["To"].addresses] == ["ann@example.com"]
    assert name_reads_as_given(parsed["To"].addresses[0].display_name, draft.recipients[0].name)
    parts = {part.get_content_type(): part for part in parsed.walk()}
    filename_read = parts["application/pdf"].get_filename()
    if attached.filename.startswith("<") and attached.filename.endswith(">"):
        filename_read = f"<{filename_read}>"  # Python's reader drops the angle brackets
    assert reads_as_given(filename_read, "subject", attached.filename)
    for part in parsed.walk():
        assert {name.lower() for name in part} <= INTENDED
        assert all(header_text_problem(str(value)) is None for value in part.values())
    assert not any(part.defects for part in parsed.walk())
