"""Webhook signatures, checked with the verification snippet exactly as the documentation gives
it to clients: genuine requests pass, forged, altered and replayed ones do not."""

import time

import pytest

from tests.support.receiver import documented_verifier
from webhooks.signing import SECRET_PREFIX, secret_generate, signature, signature_header

SECRET = "whsec_test-secret"
BODY = b'{"events":[{"id":"0b8e","type":"delivered"}]}'


@pytest.fixture(scope="module")
def verify():
    return documented_verifier()


def header_now(body: bytes = BODY, *, secret: str = SECRET, age: int = 0) -> str:
    return signature_header(secret=secret, timestamp=int(time.time()) - age, body=body)


def test_a_genuine_signature_passes_the_documented_check(verify):
    assert verify(SECRET, BODY, header_now()) is True


def test_a_signature_made_with_another_secret_fails(verify):
    assert verify(SECRET, BODY, header_now(secret="whsec_attacker")) is False


def test_a_body_altered_after_signing_fails(verify):
    header = header_now()
    assert verify(SECRET, BODY.replace(b"delivered", b"bounced"), header) is False


def test_a_changed_timestamp_fails_because_the_timestamp_is_signed(verify):
    genuine = header_now()
    digest = genuine.split("v1=")[1]
    moved = f"t={int(time.time()) + 1},v1={digest}"
    assert verify(SECRET, BODY, moved) is False


def test_a_genuine_request_replayed_after_the_tolerance_fails(verify):
    assert verify(SECRET, BODY, header_now(age=301)) is False
    assert verify(SECRET, BODY, header_now(age=299)) is True


def test_a_timestamp_from_the_future_beyond_the_tolerance_fails(verify):
    assert verify(SECRET, BODY, header_now(age=-400)) is False


@pytest.mark.parametrize(
    "header",
    ["", "garbage", "v1=abc", "t=notanumber,v1=abc", "t=,v1=", "t=1700000000"],
)
def test_a_malformed_header_fails_without_raising(verify, header):
    assert verify(SECRET, BODY, header) is False


def test_any_one_of_several_v1_signatures_may_match(verify):
    timestamp = int(time.time())
    good = signature(secret=SECRET, timestamp=timestamp, body=BODY)
    header = f"t={timestamp},v1={'0' * 64},v1={good}"
    assert verify(SECRET, BODY, header) is True


def test_the_header_has_the_documented_shape():
    header = signature_header(secret=SECRET, timestamp=1767225600, body=BODY)
    timestamp, digest = header.split(",")
    assert timestamp == "t=1767225600"
    assert digest.startswith("v1=") and len(digest) == 3 + 64
    int(digest[3:], 16)


def test_generated_secrets_are_prefixed_long_and_different():
    first, second = secret_generate(), secret_generate()
    assert first.startswith(SECRET_PREFIX) and len(first) >= len(SECRET_PREFIX) + 40
    assert first != second
