"""What the send endpoint accepts, and the field and code of every refusal (no database)."""

import pytest
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail

from api.errors import field_errors
from api.serializers.intake import MessageCreateSerializer
from deliveries.models import Delivery
from deliveries.services import Recipient
from tests.builders import message_payload


def validated(payload: dict) -> MessageCreateSerializer:
    serializer = MessageCreateSerializer(data=payload)
    assert serializer.is_valid(), serializer.errors
    return serializer


def refusal_codes(payload) -> dict:
    """The error codes, nested like the payload: {"to": {0: ["invalid_address"]}}."""
    serializer = MessageCreateSerializer(data=payload)
    with pytest.raises(serializers.ValidationError) as refused:
        serializer.is_valid(raise_exception=True)
    codes = refused.value.get_codes()
    assert isinstance(codes, dict)
    return codes


def without(field: str, **overrides) -> dict:
    payload = message_payload(**overrides)
    del payload[field]
    return payload


# -- what a valid message becomes --------------------------------------------------------------


def test_a_valid_message_becomes_the_services_keywords_with_recipients_in_order():
    serializer = validated(
        message_payload(
            to=["Ann <ann@example.com>", "bob@example.com"],
            cc=['"Young, Cy" <cy@example.com>'],
            bcc=["dee@example.com"],
            reply_to=["Help <help@shop.test>"],
            html="<p>Your code is 123456.</p>",
            headers={"X-Campaign": "signup"},
            priority="high",
        )
    )
    draft = serializer.to_draft()
    assert draft.recipients == [
        Recipient(address="ann@example.com", name="Ann", kind=Delivery.Kind.TO),
        Recipient(address="bob@example.com", name="", kind=Delivery.Kind.TO),
        Recipient(address="cy@example.com", name="Young, Cy", kind=Delivery.Kind.CC),
        Recipient(address="dee@example.com", name="", kind=Delivery.Kind.BCC),
    ]
    assert draft.sender == "Shop <no-reply@shop.test>"
    assert draft.reply_to == ["help@shop.test"]
    assert draft.subject == "Your code is 123456"
    assert draft.text == "Your verification code is 123456."
    assert draft.html == "<p>Your code is 123456.</p>"
    assert draft.headers == {"X-Campaign": "signup"}
    assert draft.priority == "high"


def test_recipients_are_ordered_to_then_cc_then_bcc_whatever_the_payload_order():
    payload = {
        "bcc": ["b@example.com"],
        "cc": ["c@example.com"],
        "to": ["t@example.com"],
        "from": "s@shop.test",
        "text": "x",
    }
    kinds = [(r.kind, r.address) for r in validated(payload).to_draft().recipients]
    assert kinds == [("to", "t@example.com"), ("cc", "c@example.com"), ("bcc", "b@example.com")]


def test_a_sender_without_a_display_name_stays_a_bare_address():
    draft = validated(message_payload(**{"from": "no-reply@shop.test"})).to_draft()
    assert draft.sender == "no-reply@shop.test"


def test_a_sender_display_name_with_a_comma_is_quoted():
    payload = message_payload(**{"from": '"Shop, Inc." <no-reply@shop.test>'})
    assert validated(payload).to_draft().sender == '"Shop, Inc." <no-reply@shop.test>'


def test_optional_fields_get_their_defaults():
    payload = {"from": "s@shop.test", "bcc": ["ann@example.com"], "html": "<p>hi</p>"}
    draft = validated(payload).to_draft()
    assert draft.subject == ""
    assert draft.text == ""
    assert draft.headers == {}
    assert draft.reply_to == []
    assert draft.priority == "normal"


def test_leading_and_trailing_whitespace_of_the_subject_and_body_is_kept():
    draft = validated(message_payload(subject="  spaced  ", text="\n  code\n")).to_draft()
    assert draft.subject == "  spaced  "
    assert draft.text == "\n  code\n"


# -- refusals: each on the right field, with the right code ------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(without("from"), {"from": ["required"]}, id="missing from"),
        pytest.param(
            message_payload(**{"from": "not-an-address"}),
            {"from": ["invalid_address"]},
            id="malformed from",
        ),
        pytest.param(
            message_payload(to=["not-an-address"]),
            {"to": {0: ["invalid_address"]}},
            id="malformed to",
        ),
        pytest.param(
            message_payload(to=["ann@example.com", "Ann <ann@>"]),
            {"to": {1: ["invalid_address"]}},
            id="second address malformed",
        ),
        pytest.param(
            message_payload(cc=["a@b.cd, c@d.ef"]),
            {"cc": {0: ["invalid_address"]}},
            id="two addresses in one string",
        ),
        pytest.param(
            message_payload(bcc=["jörg@example.com"]),
            {"bcc": {0: ["non_ascii"]}},
            id="non-ascii local part",
        ),
        pytest.param(
            message_payload(to=["ann@exämple.com"]),
            {"to": {0: ["non_ascii"]}},
            id="non-ascii domain",
        ),
        pytest.param(
            message_payload(reply_to=["help@shop.test\r\nBcc: x@y.zz"]),
            {"reply_to": {0: ["line_break"]}},
            id="line break in an address",
        ),
        pytest.param(
            message_payload(to="ann@example.com"),
            {"to": ["not_a_list"]},
            id="to is not a list",
        ),
        pytest.param(
            message_payload(to=["Ann \udc80 <ann@example.com>"]),
            {"to": {0: ["surrogate_characters_not_allowed"]}},
            id="lone surrogate in a display name",
        ),
        # Display names the library would write so that they read back otherwise.
        pytest.param(
            message_payload(to=['"' + "x" * 70 + ', evil@evil.test" <ann@example.com>']),
            {"to": {0: ["unwritable_header"]}},
            id="quoted display name too long for a line (its quotes would be dropped)",
        ),
        pytest.param(
            message_payload(**{"from": '"' + "x" * 70 + ', evil@evil.test" <no-reply@shop.test>'}),
            {"from": ["unwritable_header"]},
            id="quoted sender name too long for a line",
        ),
        pytest.param(
            message_payload(to=['"\\"\\" ü" <ann@example.com>']),
            {"to": {0: ["unwritable_header"]}},
            id="display name whose quotes would stay outside the encoded word",
        ),
        pytest.param(
            message_payload(to=['"wordü =?utf-8?q?x?=" <ann@example.com>']),
            {"to": {0: ["unwritable_header"]}},
            id="display name with a literal encoded word a reader would decode",
        ),
        pytest.param(
            message_payload(subject="Hi\r\nBcc: x@y.zz"),
            {"subject": ["line_break"]},
            id="CRLF in subject",
        ),
        pytest.param(
            message_payload(subject="Hi\nthere"),
            {"subject": ["line_break"]},
            id="LF in subject",
        ),
        pytest.param(
            message_payload(headers={"X-Tag": "a\r\nBcc: x@y.zz"}),
            {"headers": {"X-Tag": "invalid_header"}},
            id="CRLF in a header value",
        ),
        pytest.param(
            message_payload(headers={"Bcc": "x@y.zz"}),
            {"headers": {"Bcc": "invalid_header"}},
            id="reserved header Bcc",
        ),
        pytest.param(
            message_payload(headers={"from": "Boss <ceo@shop.test>"}),
            {"headers": {"from": "invalid_header"}},
            id="reserved header from, any case",
        ),
        pytest.param(
            message_payload(headers={"Bad Name": "x"}),
            {"headers": {"Bad Name": "invalid_header"}},
            id="space in a header name",
        ),
        pytest.param(
            message_payload(headers={"X-Colon:": "x"}),
            {"headers": {"X-Colon:": "invalid_header"}},
            id="colon in a header name",
        ),
        pytest.param(
            message_payload(headers={"X-Tag": "a", "x-tag": "b"}),
            {"headers": {"x-tag": "invalid_header"}},
            id="header given twice",
        ),
        pytest.param(
            message_payload(priority="urgent"),
            {"priority": ["invalid_choice"]},
            id="unknown priority",
        ),
        pytest.param(
            message_payload(texte="typo for text"),
            {"texte": ["unknown_field"]},
            id="unknown field",
        ),
        pytest.param(
            message_payload(to=[], cc=[], bcc=[]),
            {"to": ["required"]},
            id="no recipients",
        ),
        pytest.param(without("to"), {"to": ["required"]}, id="no recipient fields at all"),
        pytest.param(without("text"), {"text": ["required"]}, id="neither text nor html"),
        pytest.param(
            message_payload(text="", html=""),
            {"text": ["required"]},
            id="both bodies empty",
        ),
    ],
)
def test_bad_input_is_refused_on_the_right_field_with_the_right_code(payload, expected):
    assert refusal_codes(payload) == expected


def test_a_payload_that_is_not_an_object_is_refused():
    assert refusal_codes([message_payload()]) == {"non_field_errors": ["invalid"]}


def test_too_many_headers_are_refused(settings):
    settings.MAILHUB_MAX_HEADERS = 2
    assert validated(message_payload(headers={"X-A": "1", "X-B": "2"}))
    payload = message_payload(headers={"X-A": "1", "X-B": "2", "X-C": "3"})
    assert refusal_codes(payload) == {"headers": ["max_length"]}


def test_too_many_recipients_are_refused_counting_to_cc_and_bcc_together(settings):
    settings.MAILHUB_MAX_RECIPIENTS = 3
    at_limit = message_payload(to=["a@example.com"], cc=["b@example.com"], bcc=["c@example.com"])
    assert validated(at_limit)
    over = message_payload(
        to=["a@example.com", "d@example.com"], cc=["b@example.com"], bcc=["c@example.com"]
    )
    assert refusal_codes(over) == {"to": ["max_length"]}


@pytest.mark.parametrize("field", ["text", "html"])
def test_a_body_is_measured_in_utf8_bytes_up_to_the_limit_exactly(settings, field):
    settings.MAILHUB_MAX_BODY_BYTES = 10
    at_limit = "é" * 4 + "ab"  # 4 * 2 + 2 = 10 bytes, 6 characters
    assert validated(message_payload(**{"text": "", field: at_limit}))
    one_over = "é" * 5 + "a"  # 11 bytes, still only 6 characters
    payload = message_payload(**{"text": "", field: one_over})
    assert refusal_codes(payload) == {field: ["max_size"]}


def test_a_body_of_multi_byte_characters_counts_every_byte(settings):
    settings.MAILHUB_MAX_BODY_BYTES = 12
    assert validated(message_payload(text="✓" * 4))  # 3 bytes each: 12
    assert refusal_codes(message_payload(text="✓" * 4 + "!")) == {"text": ["max_size"]}


def test_every_bad_field_is_reported_at_once():
    payload = message_payload(
        **{"from": "nobody"}, to=["ann@example.com", "x"], subject="a\nb", priority="urgent"
    )
    assert refusal_codes(payload) == {
        "from": ["invalid_address"],
        "to": {1: ["invalid_address"]},
        "subject": ["line_break"],
        "priority": ["invalid_choice"],
    }


# -- field_errors: DRF's nesting flattened for the problem response ----------------------------


def test_field_errors_name_a_list_item_by_its_index():
    detail = {"to": {0: [ErrorDetail("bad", code="invalid_address")]}}
    assert field_errors(detail) == [{"field": "to[0]", "code": "invalid_address", "message": "bad"}]


def test_field_errors_name_a_header_by_its_name_and_keep_every_error():
    detail = {
        "headers": {"Bcc": ErrorDetail("reserved", code="invalid_header")},
        "subject": [
            ErrorDetail("no breaks", code="line_break"),
            ErrorDetail("too long", code="max_length"),
        ],
    }
    assert field_errors(detail) == [
        {"field": "headers.Bcc", "code": "invalid_header", "message": "reserved"},
        {"field": "subject", "code": "line_break", "message": "no breaks"},
        {"field": "subject", "code": "max_length", "message": "too long"},
    ]


def test_field_errors_give_errors_about_the_whole_payload_no_field():
    detail = {"non_field_errors": [ErrorDetail("Expected an object.", code="invalid")]}
    assert field_errors(detail) == [
        {"field": None, "code": "invalid", "message": "Expected an object."}
    ]


def test_field_errors_match_what_the_serializer_reports():
    serializer = MessageCreateSerializer(data=message_payload(to=["ann@example.com", "nope"]))
    assert not serializer.is_valid()
    assert [(e["field"], e["code"]) for e in field_errors(serializer.errors)] == [
        ("to[1]", "invalid_address")
    ]
