"""Issue 13's header and body injections, and its poison inputs, through the real API: each is a
400 naming the field, and nothing is stored (so no worker ever has to build it)."""

import json

import pytest

from deliveries.models import Template
from tests.builders import message_payload
from tests.integration.test_api_input import assert_field_error, assert_nothing_stored

pytestmark = pytest.mark.integration

URL = "/api/v1/messages"
ENCODED_BCC = "=?utf-8?q?hi=0D=0ABcc=3A_evil=40evil.test?="
ENCODED_REPLY_TO = "=?utf-8?q?x=0D=0AReply-To=3A_evil=40evil.test?="


def attachment(**overrides) -> dict:
    return {"filename": "a.pdf", "content_type": "application/pdf", "content": "eA==", **overrides}


CASES = {
    # 1. encoded words that decode to line breaks
    "encoded Bcc in the subject": (message_payload(subject=ENCODED_BCC), "subject", "line_break"),
    "encoded blank line in the subject": (
        message_payload(subject="=?utf-8?q?hi=0D=0A=0D=0A<b>body</b>?="),
        "subject",
        "line_break",
    ),
    "encoded bare LF in the subject": (
        message_payload(subject="=?utf-8?q?hi=0A?="),
        "subject",
        "line_break",
    ),
    "utf-7 encoded CRLF in the subject": (
        message_payload(subject="=?utf-7?q?+AA0ACg-Bcc:x?="),
        "subject",
        "line_break",
    ),
    "encoded Reply-To in a custom header": (
        message_payload(headers={"X-Note": ENCODED_REPLY_TO}),
        "headers.X-Note",
        "invalid_header",
    ),
    "encoded CRLF in a filename": (
        message_payload(attachments=[attachment(filename="=?utf-8?q?a=0D=0AX-Y=3A_z?=")]),
        "attachments[0].filename",
        "line_break",
    ),
    "encoded CRLF in a content id": (
        message_payload(
            html='<img src="cid:x">',
            attachments=[
                attachment(
                    disposition="inline",
                    content_type="image/png",
                    content_id="=?utf-8?q?a=0D=0AX-Y=3A_z?=",
                )
            ],
        ),
        "attachments[0].content_id",
        "line_break",
    ),
    "encoded CRLF in the sender's display name": (
        message_payload(**{"from": "=?utf-8?q?a=0D=0Ab?= <no-reply@shop.test>"}),
        "from",
        "line_break",
    ),
    "encoded CRLF in a recipient's display name": (
        message_payload(to=["=?utf-8?q?a=0D=0ABcc=3A_x=40y.zz?= <ann@example.com>"]),
        "to[0]",
        "line_break",
    ),
    # 2. what used to be accepted and then failed the whole task in the worker
    "U+2028 in the subject": (message_payload(subject="hi\u2028x"), "subject", "line_break"),
    "U+2029 in the subject": (message_payload(subject="hi\u2029x"), "subject", "line_break"),
    "NEL in the subject": (message_payload(subject="hi\x85x"), "subject", "line_break"),
    "VT in the subject": (message_payload(subject="hi\x0bx"), "subject", "line_break"),
    "FF in the subject": (message_payload(subject="hi\x0cx"), "subject", "line_break"),
    "ESC in the subject": (message_payload(subject="hi\x1bx"), "subject", "control_character"),
    "FS in a header value": (
        message_payload(headers={"X-Note": "a\x1cb"}),
        "headers.X-Note",
        "invalid_header",
    ),
    "GS in a filename": (
        message_payload(attachments=[attachment(filename="a\x1db.pdf")]),
        "attachments[0].filename",
        "line_break",
    ),
    "RS in a display name": (
        message_payload(to=["A\x1eB <ann@example.com>"]),
        "to[0]",
        "line_break",
    ),
    # 3. an address longer than SMTP allows: a 400, not a 500 from the database
    "a 255-character address in to": (
        message_payload(to=["a" * 64 + "@" + ("b" * 60 + ".") * 3 + "c" * 7]),
        "to[0]",
        "max_length",
    ),
    "a 255-character address in from": (
        message_payload(**{"from": "a" * 64 + "@" + ("b" * 60 + ".") * 3 + "c" * 7}),
        "from",
        "max_length",
    ),
}


@pytest.mark.parametrize(("payload", "field", "code"), CASES.values(), ids=CASES.keys())
def test_hostile_header_text_is_refused_naming_the_field(acme, payload, field, code):
    response = acme.api.post(URL, payload, format="json")
    assert_field_error(response, field=field, code=code)
    assert_nothing_stored()


def test_an_address_of_254_characters_is_still_accepted(acme):
    address = "a" * 64 + "@" + ("b" * 60 + ".") * 3 + "c" * 6
    assert len(address) == 254
    response = acme.api.post(URL, message_payload(to=[address]), format="json")
    assert response.status_code == 202, response.content


def test_an_ordinary_encoded_word_subject_is_still_accepted(acme):
    response = acme.api.post(
        URL, message_payload(subject="=?utf-8?q?caf=C3=A9?= at\ttwo"), format="json"
    )
    assert response.status_code == 202, response.content


@pytest.mark.parametrize(
    ("value", "code"),
    [
        pytest.param(ENCODED_BCC, "line_break", id="encoded CRLF"),
        pytest.param("hi\u2028x", "line_break", id="U+2028"),
        pytest.param("a\x1bb", "control_character", id="ESC"),
    ],
)
def test_a_context_value_rendered_into_the_subject_is_held_to_the_header_rule(acme, value, code):
    Template.objects.create(client=acme.client, name="t", subject="Hi {{ name }}", text="x")
    payload = message_payload(template="t", context={"name": value})
    del payload["subject"], payload["text"]
    response = acme.api.post(URL, payload, format="json")
    assert_field_error(response, field="template", code=code)
    assert_nothing_stored()


@pytest.mark.parametrize(
    ("context", "path"),
    [
        pytest.param({"name": "a\ud800b"}, "name", id="lone surrogate"),
        pytest.param({"items": [{"x": "a\x00b"}]}, "items[0].x", id="NUL deep inside"),
        pytest.param({"a\x00": "b"}, "a\x00", id="NUL in a key"),
    ],
)
def test_a_context_string_postgres_or_utf8_cannot_hold_is_a_400(acme, context, path):
    Template.objects.create(client=acme.client, name="t", subject="s", text="{{ name }}")
    payload = message_payload(template="t", context={"name": "x", **context})
    del payload["subject"], payload["text"]
    # json.dumps writes a lone surrogate as the escape a client would send: "\ud800".
    response = acme.api.post(URL, json.dumps(payload), content_type="application/json")
    assert_field_error(response, field="context", code="invalid_context")
    assert path in response.json()["detail"]
    assert_nothing_stored()


def test_a_template_whose_subject_breaks_the_header_rule_is_refused_when_saved(acme):
    response = acme.api.post(
        "/api/v1/templates",
        {"name": "t", "subject": ENCODED_BCC, "text": "x"},
        format="json",
    )
    assert_field_error(response, field="subject", code="line_break")
    assert not Template.objects.exists()
