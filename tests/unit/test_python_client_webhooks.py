"""The Python client's webhook signature check against Mailhub's own signer (webhooks/signing.py):
genuine requests pass; forged, altered, replayed and malformed ones fail without raising."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mailhub_client.webhooks import SIGNATURE_HEADER, InvalidSignature, events, verify

from webhooks.signing import SIGNATURE_HEADER as SIGNED_HEADER
from webhooks.signing import secret_generate, signature, signature_header

SECRET = secret_generate()
BODY = json.dumps({"events": [{"id": "0b8e", "type": "delivered"}]}).encode()


def signed(body: bytes = BODY, *, secret: str = SECRET, age: int = 0) -> str:
    return signature_header(secret=secret, timestamp=int(time.time()) - age, body=body)


def test_the_header_name_is_the_one_mailhub_sends():
    assert SIGNATURE_HEADER == SIGNED_HEADER


def test_a_request_signed_by_mailhub_passes():
    assert verify(SECRET, BODY, signed()) is True


def test_another_secret_an_altered_body_or_a_moved_time_fail():
    assert verify(SECRET, BODY, signed(secret=secret_generate())) is False
    assert verify(SECRET, BODY.replace(b"delivered", b"bounced"), signed()) is False
    digest = signed().split("v1=")[1]
    assert verify(SECRET, BODY, f"t={int(time.time()) + 1},v1={digest}") is False


def test_a_signature_older_or_newer_than_the_tolerance_fails():
    assert verify(SECRET, BODY, signed(age=299)) is True
    assert verify(SECRET, BODY, signed(age=301)) is False
    assert verify(SECRET, BODY, signed(age=-301)) is False
    assert verify(SECRET, BODY, signed(age=3000), tolerance=3600) is True
    header = signature_header(secret=SECRET, timestamp=1_767_225_600, body=BODY)
    assert verify(SECRET, BODY, header, now=1_767_225_600 + 10) is True


def test_any_one_of_several_v1_signatures_may_match():
    timestamp = int(time.time())
    good = signature(secret=SECRET, timestamp=timestamp, body=BODY)
    assert verify(SECRET, BODY, f"t={timestamp},v1={'0' * 64},v1={good}") is True
    assert verify(SECRET, BODY, f"t={timestamp}, v1={good}") is True  # spaces after commas


@pytest.mark.parametrize(
    "header",
    ["", "garbage", "v1=abc", "t=notanumber,v1=abc", "t=,v1=", "t=1700000000", "t=1,v1=é"],
)
def test_a_malformed_header_fails_without_raising(header):
    assert verify(SECRET, BODY, header) is False


@given(st.text(max_size=200))
def test_no_header_whatsoever_makes_verify_raise(header):
    assert verify(SECRET, BODY, header) in (True, False)


def test_the_raw_body_is_required_not_a_decoded_one():
    with pytest.raises(TypeError, match="raw body"):
        verify(SECRET, BODY.decode(), signed())


def test_events_of_a_genuine_request_and_a_refusal_of_a_forged_one():
    assert events(SECRET, BODY, signed()) == [{"id": "0b8e", "type": "delivered"}]
    with pytest.raises(InvalidSignature):
        events(SECRET, BODY, signed(secret="whsec_attacker"))
