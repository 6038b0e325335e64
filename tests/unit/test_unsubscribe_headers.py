"""RFC 8058 headers in each recipient's copy (``deliveries.parcels``) and the public URL they
start with (``MAILHUB_PUBLIC_URL``): whatever URL the setting accepts and whatever delivery, the
two fields read back as exactly themselves, the link naming that delivery."""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import default

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from deliveries.models import Delivery, Message
from deliveries.parcels import parcels, unsubscribe_headers, wants_unsubscribe
from deliveries.tokens import UNSUBSCRIBE, read_delivery_token
from mailhub.env import parse_public_url

BODY = b"From: s@shop.test\r\nSubject: hi\r\n\r\nhello\r\n"
_LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
_PATH = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~%!$&'()*+,;=:@/", max_size=60)
PUBLIC_URLS = st.builds(
    lambda scheme, labels, port, path: f"{scheme}://{'.'.join(labels)}{port}/{path}",
    st.sampled_from(["http", "https"]),
    st.lists(_LABEL, min_size=1, max_size=4),
    st.sampled_from(["", ":8000", ":443"]),
    _PATH,
)


@override_settings(SECRET_KEY="unit-test-secret")
@given(base=PUBLIC_URLS, delivery_id=st.integers(min_value=1, max_value=2**63 - 1))
def test_the_headers_read_back_as_two_fields_whose_link_names_the_delivery(base, delivery_id):
    base = parse_public_url("MAILHUB_PUBLIC_URL", base)
    block = unsubscribe_headers(base, delivery_id)

    parsed = BytesHeaderParser(policy=default).parsebytes(block + BODY)

    assert parsed.get_all("List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]
    [value] = parsed.get_all("List-Unsubscribe")
    assert value.startswith("<") and value.endswith(">")
    url = value[1:-1]
    assert url.startswith(base + "/u/")
    assert read_delivery_token(UNSUBSCRIBE, url.rsplit("/", 1)[1]) == delivery_id
    assert all(len(line) <= 998 for line in block.split(b"\r\n"))


@override_settings(SECRET_KEY="unit-test-secret")
def test_each_recipient_gets_its_own_copy_and_the_same_envelope_sender_without_verp():
    deliveries = [Delivery(id=1, address="ann@example.com"), Delivery(id=2, address="bob@x.test")]

    found = parcels(
        deliveries,
        sender="s@shop.test",
        content=BODY,
        bounce_domain="",
        unsubscribe_base="https://mail.example.com",
    )

    assert [p.envelope.recipients for p in found] == [["ann@example.com"], ["bob@x.test"]]
    assert {p.envelope.sender for p in found} == {"s@shop.test"}
    first, second = (p.envelope.content for p in found)
    assert first != second and first.endswith(BODY) and second.endswith(BODY)


@pytest.mark.parametrize(
    ("unsubscribe", "priority", "headers", "expected"),
    [
        (None, "low", {}, True),
        (None, "normal", {}, False),
        (None, "high", {}, False),
        (True, "high", {}, True),
        (False, "low", {}, False),
        (None, "low", {"List-Unsubscribe": "<mailto:u@shop.test>"}, False),  # the client's own
        (True, "low", {"list-unsubscribe-post": "List-Unsubscribe=One-Click"}, False),
    ],
)
def test_who_gets_unsubscribe_links(unsubscribe, priority, headers, expected):
    message = Message(unsubscribe=unsubscribe, priority=priority, headers=headers)
    assert wants_unsubscribe(message) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://mail.example.com/", "https://mail.example.com"),
        (" https://example.com/mailhub/ ", "https://example.com/mailhub"),
    ],
)
def test_a_public_url_is_kept_without_its_trailing_slash(value, expected):
    assert parse_public_url("MAILHUB_PUBLIC_URL", value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "mail.example.com",
        "ftp://mail.example.com",
        "https://",
        "https://mail.example.com/?a=1",
        "https://mail.example.com/#top",
        "https://user:pw@mail.example.com",
        "https://mail.example.com:port",
        "https://mail.example.com/a b",
        "https://mail.example.com/\r\nBcc: x@y.test",
        "https://mäil.example.com",
        "https://example.com/" + "a" * 200,
    ],
)
def test_anything_else_is_refused_naming_the_variable(value):
    with pytest.raises(ImproperlyConfigured, match="MAILHUB_PUBLIC_URL"):
        parse_public_url("MAILHUB_PUBLIC_URL", value)
