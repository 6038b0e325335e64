"""The header rule, and the MIME builder holding every header-bound value to it (no database)."""

import base64
import email
import email.policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deliveries.header_text import HeaderTextError, header_text_problem
from deliveries.mime import build_mime
from deliveries.models import Attachment, Delivery, Message
from tests.unit.test_mime import make_message

# What issue 13 saw get through, and its relatives: each decodes to, or is, a line break or a
# control character.
HOSTILE = {
    "encoded CRLF and a Bcc line": "=?utf-8?q?hi=0D=0ABcc=3A_evil=40evil.test?=",
    "encoded blank line (body injection)": "=?utf-8?q?hi=0D=0A=0D=0A<html>?=",
    "encoded bare LF": "=?utf-8?q?hi=0A?=",
    "encoded bare CR": "=?UTF-8?Q?hi=0Dx?=",
    "base64 CRLF": "=?utf-8?b?aGkNCkJjYzogZUBlLnRlc3Q=?=",
    "base64 CRLF without padding": "=?utf-8?b?DQo?=",
    "utf-7 spells CRLF without a control byte": "=?utf-7?q?+AA0ACg-Bcc:x?=",
    "unicode_escape spells LF": "=?unicode_escape?q?a\\nBcc: x?=",
    "base64 the library cannot read, decoded as it stands": "=?unicode_escape?b?a%\\4b?=",
    "encoded U+2028": "=?utf-8?q?a=E2=80=A8b?=",
    "encoded NEL in latin-1": "=?iso-8859-1?q?a=85b?=",
    "encoded NUL": "=?utf-8?q?a=00b?=",
    "encoded word with a language": "=?utf-8*en?q?a=0D=0Ab?=",
    "utf-16 word": "=?utf-16?b?AA0ACg==?=",
    "word not valid in its charset": "=?utf-8?q?=FF?=",
    "encoded CRLF inside an encoded word": "=?utf-8?q?=3D=3Futf-8=3Fq=3F=3D0D=3D0A=3F=3D?=",
    "CR LF": "a\r\nBcc: x@evil.test",
    "LF": "a\nb",
    "CR": "a\rb",
    "VT": "a\x0bb",
    "FF": "a\x0cb",
    "FS": "a\x1cb",
    "GS": "a\x1db",
    "RS": "a\x1eb",
    "NEL": "a\x85b",
    "U+2028": "hi\u2028x",
    "U+2029": "a\u2029b",
    "NUL": "a\x00b",
    "ESC": "a\x1b[31mb",
    "DEL": "a\x7fb",
    "C1 CSI": "a\x9bb",
    "lone surrogate": "a\ud800b",
}
BENIGN = {
    "plain": "Your code is 123456",
    "tab": "a\tb",
    "non-ascii": "Grüße, Zoë — ✓ €",
    "an encoded word": "=?utf-8?q?caf=C3=A9?= time",
    "base64 word": "=?utf-8?b?4oKs?=",
    "looks like a word but is not one": "=?x?y?z",
    "bidi and zero-width characters are not line breaks": "a\u202eb\u200bc",
}


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_the_rule_refuses_every_line_break_and_control_character_even_encoded(value):
    assert header_text_problem(value) is not None


@pytest.mark.parametrize("value", BENIGN.values(), ids=BENIGN.keys())
def test_the_rule_lets_ordinary_header_text_through(value):
    assert header_text_problem(value) is None


def nested(text: str, levels: int) -> str:
    for _ in range(levels):
        text = "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="
    return text


def test_encoded_words_nested_three_deep_are_read_and_four_deep_refused():
    assert header_text_problem(nested("harmless", 3)) is None
    assert header_text_problem(nested("a\r\nBcc: x", 3)).code == "line_break"
    assert header_text_problem(nested("harmless", 4)).code == "nested_encoded_words"


def test_the_problem_names_the_kind_and_the_place():
    assert header_text_problem("ab\u2028")[:] == (
        "line_break",
        "line separator (U+2028) at position 2",
    )
    assert header_text_problem("a\x1bb").code == "control_character"
    encoded = header_text_problem("x =?utf-8?q?=0A?=")
    assert encoded.code == "line_break"
    assert encoded.reason == "line feed once decoded (in '=?utf-8?q?=0A?=')"


def message(**overrides) -> Message:
    return make_message(**{"subject": "Hello", "text_body": "Body.", **overrides})


def to(name: str = "") -> list[Delivery]:
    return [Delivery(address="ann@example.com", name=name, kind=Delivery.Kind.TO)]


def attachment(filename: str = "a.txt", content_id: str = "") -> list[Attachment]:
    return [
        Attachment(
            filename=filename,
            content_type="text/plain",
            content=b"x",
            content_id=content_id,
            size=1,
        )
    ]


PLACES = {
    "subject": lambda v: (message(subject=v), to(), []),
    "custom header value": lambda v: (message(headers={"X-Note": v}), to(), []),
    "sender's display name": lambda v: (message(sender=f"{v} <s@shop.test>"), to(), []),
    "recipient's display name": lambda v: (message(), to(v), []),
    "attachment filename": lambda v: (message(), to(), attachment(filename=v)),
    "content id": lambda v: (
        message(html_body='<img src="cid:x">'),
        to(),
        attachment(content_id=v),
    ),
}


def parsed_headers(raw: bytes) -> list[tuple[str, str]]:
    """Every header of every part, as a reader decodes it."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    return [(name.lower(), str(value)) for part in parsed.walk() for name, value in part.items()]


INTENDED = {
    "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
    "content-transfer-encoding", "content-disposition", "content-id", "x-note",
}  # fmt: skip


@pytest.mark.parametrize("place", PLACES.values(), ids=PLACES.keys())
@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_value_is_refused_or_written_without_a_line_break_in_every_place(value, place):
    try:
        raw = build_mime(*place(value))
    except ValueError:  # HeaderTextError, or the library's own refusal
        return
    # Written anyway only where it is harmless, e.g. an encoded word inside a quoted display
    # name, whose backslash is escaped: the reader sees the text "a\\nb", no line break.
    headers = parsed_headers(raw)
    assert {name for name, _ in headers} <= INTENDED
    assert all(header_text_problem(text) is None for _, text in headers)


@pytest.mark.parametrize("place", PLACES.values(), ids=PLACES.keys())
def test_an_encoded_crlf_never_becomes_a_header_of_its_own(place):
    with pytest.raises(HeaderTextError):
        build_mime(*place("=?utf-8?q?x=0D=0AReply-To=3A_evil=40evil.test?="))


# -- built, then parsed back: nothing but the intended headers ------------------------------

HEADER_TEXT = st.lists(
    st.characters(codec="utf-8") | st.sampled_from(["=?", "?=", " ", "=0D=0A", "?q?"]),
    max_size=40,
).map("".join) | st.builds(
    "=?{}?{}?{}?=".format,
    st.sampled_from(["utf-8", "iso-8859-1", "utf-7", "us-ascii", "x-unknown"]),
    st.sampled_from(["q", "b", "Q"]),
    st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="?"), max_size=20
    ),
)


@settings(max_examples=400, deadline=None)
@given(subject=HEADER_TEXT, note=HEADER_TEXT, name=HEADER_TEXT)
def test_what_the_rule_accepts_is_built_into_exactly_the_intended_headers(subject, note, name):
    values = [subject, note, name]
    try:
        raw = build_mime(message(subject=subject, headers={"X-Note": note}), to(name))
    except HeaderTextError:
        # Refused by the rule, or a header the library would have written as more than one field.
        return
    head = raw.partition(b"\r\n\r\n")[0]
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert [key.lower() for key in parsed] == [
        "from", "to", "subject", "date", "message-id",
        "content-type", "content-transfer-encoding", "mime-version", "x-note",
    ]  # fmt: skip
    assert not parsed.defects
    assert all(header_text_problem(value) is None for value in values)
    # Nothing after the blank line looks like a header of this message.
    assert parsed.get_content().splitlines() == ["Body."]
    assert b"\r\n\r\n" not in head and b"\n" not in head.replace(b"\r\n", b"")
