"""Whatever validation accepts, the worker can build, into exactly the headers intended.

Arbitrary Unicode goes into every header-bound field of a message (the sender's and recipients'
display names, the subject, a custom header's value, an attachment's filename and content id);
each draft validation accepts is built into MIME and parsed back (no database).
"""

import email
import email.policy
from datetime import UTC, datetime
from email.utils import formataddr

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.serializers.intake import MessageCreateSerializer
from deliveries.header_text import header_text_problem
from deliveries.mime import build_mime
from deliveries.models import Attachment, Delivery, Message
from deliveries.services import MessageDraft

# Any character, with the pieces that make encoded words, folding and quoting interesting.
PIECES = st.sampled_from(
    ["=?", "?=", "?q?", "?b?", "=0D=0A", "=0A", "utf-8", " ", "  ", "\t", '"', "\\", "<", ">", ","]
)
TEXT = st.lists(st.characters() | PIECES, max_size=30).map("".join)
ENCODED_WORD = st.builds(
    "=?{}?{}?{}?=".format,
    st.sampled_from(["utf-8", "iso-8859-1", "utf-7", "unicode_escape", "utf-16"]),
    st.sampled_from(["q", "b"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="?")),
)
HEADER_BOUND = TEXT | ENCODED_WORD | st.builds("{} {}".format, TEXT, ENCODED_WORD)


def draft_of(payload: dict) -> MessageDraft | None:
    serializer = MessageCreateSerializer(data=payload)
    return serializer.to_draft() if serializer.is_valid() else None


def built(draft: MessageDraft) -> bytes:
    message = Message(
        sender=draft.sender,
        reply_to=list(draft.reply_to),
        subject=draft.subject,
        text_body=draft.text,
        html_body=draft.html,
        headers=dict(draft.headers),
        message_id="<m1@shop.test>",
        created_at=datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC),
    )
    deliveries = [Delivery(address=r.address, name=r.name, kind=r.kind) for r in draft.recipients]
    attachments = [
        Attachment(
            filename=a.filename,
            content_type=a.content_type,
            content=a.content,
            content_id=a.content_id,
            size=len(a.content),
        )
        for a in draft.attachments
    ]
    return build_mime(message, deliveries, attachments)


def as_read(name: str, value: str) -> str:
    """What a reader makes of ``value`` in header ``name``: encoded words decoded."""
    return str(email.policy.default.header_factory(name, value))


def reads_as_given(read: str, name: str, given: str) -> bool:
    """``read`` is ``given`` as written, or with its encoded words decoded (once, or twice: the
    library decodes one level when it parses a value and may write the result out as it reads),
    but for white space around words, which folding and unfolding may change."""
    once = as_read(name, given)
    return read.split() in (given.split(), once.split(), as_read(name, once).split())


def name_reads_as_given(read: str, given: str) -> bool:
    """``reads_as_given`` for a display name, decoded as a reader decodes it in an address."""
    once = display_name_as_read(given)
    twice = display_name_as_read(once) if once is not None else None
    readings = [given, once, twice, as_read("subject", given)]
    return read.split() in [reading.split() for reading in readings if reading is not None]


def display_name_as_read(name: str) -> str | None:
    try:
        header = email.policy.default.header_factory("to", formataddr((name, "a@b.test")))
        return header.addresses[0].display_name
    except (IndexError, ValueError):
        return None


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sender_name=HEADER_BOUND,
    to_name=HEADER_BOUND,
    subject=HEADER_BOUND,
    note=HEADER_BOUND,
    filename=HEADER_BOUND,
    content_id=HEADER_BOUND,
)
def test_every_accepted_draft_builds_into_exactly_the_intended_headers(
    sender_name, to_name, subject, note, filename, content_id
):
    payload = {
        "from": f'"{sender_name}" <no-reply@shop.test>',
        "to": [f'"{to_name}" <ann@example.com>'],
        "subject": subject,
        "text": "Body.",
        "html": '<img src="cid:x">',
        "headers": {"X-Note": note},
        "attachments": [
            {"filename": filename, "content_type": "application/pdf", "content": "eA=="},
            {
                "filename": "logo.png",
                "content_type": "image/png",
                "content": "eA==",
                "disposition": "inline",
                "content_id": content_id,
            },
        ],
    }
    draft = draft_of(payload)
    if draft is None:
        return
    raw = built(draft)  # never raises for an accepted draft

    _, blank, _ = raw.partition(b"\r\n\r\n")
    assert blank
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert [name.lower() for name in parsed] == [
        "from", "to", "subject", "date", "message-id", "mime-version", "content-type", "x-note",
    ]  # fmt: skip
    # Each value reads back as it was given (encoded words as a reader decodes them).
    assert reads_as_given(str(parsed["Subject"]), "subject", draft.subject)
    assert reads_as_given(str(parsed["X-Note"]), "x-note", note)
    assert parsed["From"].addresses[0].addr_spec == "no-reply@shop.test"
    assert parsed["To"].addresses[0].addr_spec == "ann@example.com"
    assert name_reads_as_given(parsed["To"].addresses[0].display_name, draft.recipients[0].name)
    parts = {part.get_content_type(): part for part in parsed.walk()}
    assert parts["text/plain"].get_content().splitlines() == ["Body."]
    attached, inline = draft.attachments  # as validated: white space around them trimmed
    cid = f"<{inline.content_id}>"
    assert reads_as_given(str(parts["image/png"]["Content-ID"]), "content-id", cid)
    filename_read = parts["application/pdf"].get_filename()
    if attached.filename.startswith("<") and attached.filename.endswith(">"):
        # Python's reader (email.utils.unquote) drops the angle brackets round a parameter.
        filename_read = f"<{filename_read}>"
    assert reads_as_given(filename_read, "subject", attached.filename)
    # No part has a header it was not meant to have, nor one holding a line break.
    for part in parsed.walk():
        assert {name.lower() for name in part} <= INTENDED
        assert all(header_text_problem(str(value)) is None for value in part.values())
    assert not any(part.defects for part in parsed.walk())


INTENDED = {
    "from", "to", "subject", "date", "message-id", "mime-version", "content-type", "x-note",
    "content-transfer-encoding", "content-disposition", "content-id",
}  # fmt: skip
