"""DKIM signing (``domains.signing``) and its place in what is sent (``deliveries.parcels``):
the bytes sent verify against the published record with either algorithm, the right headers are
signed and From cannot be added to, and a signature that cannot be made leaves the mail unsigned
instead of unsent."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import dkim
import pytest

from deliveries.models import Delivery
from deliveries.parcels import parcels
from domains import keys, signing
from domains.signing import Signer, _candidates, dkimpy_key, from_domain

MESSAGE = (
    b"From: Shop <no-reply@shop.test>\r\n"
    b"To: ann@example.com\r\n"
    b"Subject: Hello\r\n"
    b"Date: Fri, 04 Dec 2026 12:00:00 +0000\r\n"
    b"Message-ID: <1@shop.test>\r\n"
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"MIME-Version: 1.0\r\n"
    b"X-Campaign: spring\r\n"
    b"\r\n"
    b"Hi.\r\n"
)


def signer_and_record(algorithm: str) -> tuple[Signer, bytes]:
    pair = keys.generate(algorithm)
    key_type = "ed25519" if algorithm == keys.ED25519_SHA256 else "rsa"
    signer = Signer(
        key_id=1,
        domain="shop.test",
        selector="mh1",
        algorithm=algorithm,
        private_key=dkimpy_key(algorithm, pair.private_pem),
    )
    return signer, f"v=DKIM1; k={key_type}; p={pair.public_key}".encode()


def published(record: bytes):
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mh1._domainkey.shop.test."
        return record

    return dnsfunc


@pytest.mark.parametrize("algorithm", [keys.RSA_SHA256, keys.ED25519_SHA256])
def test_signed_bytes_verify_against_the_published_record(algorithm):
    signer, record = signer_and_record(algorithm)

    signed = signer.sign(MESSAGE) + MESSAGE

    assert dkim.verify(signed, dnsfunc=published(record))
    assert f"a={algorithm}".encode() in signed


def test_the_listed_headers_present_are_signed_and_from_once_more_than_it_occurs():
    signer, _ = signer_and_record(keys.ED25519_SHA256)
    signature = signer.sign(MESSAGE)

    tags = dict(
        tag.strip().split("=", 1) for tag in b"".join(signature.split()).decode().split(";") if tag
    )
    signed = tags["h"].split(":")
    assert signed == [
        "from", "to", "subject", "date", "message-id", "content-type", "mime-version", "from",
    ]  # fmt: skip
    assert tags["d"] == "shop.test" and tags["s"] == "mh1"


def test_a_from_header_added_after_signing_breaks_the_signature():
    signer, record = signer_and_record(keys.ED25519_SHA256)
    signed = signer.sign(MESSAGE) + MESSAGE

    forged = b"From: ceo@shop.test\r\n" + signed

    assert not dkim.verify(forged, dnsfunc=published(record))


def test_a_signer_that_fails_leaves_the_mail_unsigned_and_says_so(caplog):
    broken = Signer(
        key_id=1, domain="shop.test", selector="mh1", algorithm="rsa-sha256", private_key=b"junk"
    )
    delivery = Delivery(id=7, address="ann@example.com")

    with caplog.at_level(logging.WARNING, logger="deliveries.parcels"):
        [parcel] = parcels(
            [delivery],
            sender="no-reply@shop.test",
            content=MESSAGE,
            bounce_domain="",
            signer=broken,
        )

    assert parcel.envelope.content == MESSAGE
    assert "DKIM signing" in caplog.text and "sent unsigned" in caplog.text


def test_with_verp_every_transaction_carries_the_one_signature():
    signer, record = signer_and_record(keys.RSA_SHA256)
    deliveries = [Delivery(id=1, address="ann@example.com"), Delivery(id=2, address="bob@x.test")]

    found = parcels(
        deliveries, sender="s@shop.test", content=MESSAGE, bounce_domain="b.test", signer=signer
    )

    assert len(found) == 2 and found[0].envelope.content == found[1].envelope.content
    assert dkim.verify(found[0].envelope.content, dnsfunc=published(record))


def test_the_from_domain_and_the_domains_that_may_sign_for_it():
    assert from_domain("no-reply@News.Shop.Test") == "news.shop.test"
    assert from_domain("no-at-sign") == ""
    assert _candidates("a.news.shop.test") == ["a.news.shop.test", "news.shop.test", "shop.test"]
    assert _candidates("localhost") == ["localhost"]


def test_rsa_signatures_made_through_openssl_are_dkimpy_s_own_bytes(monkeypatch):
    """dkimpy's pure-Python RSA step is replaced by OpenSSL's (16 ms -> ~1 ms of CPU); PKCS#1
    v1.5 is deterministic, so the DKIM-Signature must come out byte for byte the same."""
    signer, record = signer_and_record(keys.RSA_SHA256)
    assert dkim.RSASSA_PKCS1_v1_5_sign is signing.rsa_pkcs1v15_sign
    # The same `t=` for both: the two signatures could otherwise straddle a second.
    now = time.time()
    monkeypatch.setattr(dkim, "time", SimpleNamespace(time=lambda: now))

    through_openssl = signer.sign(MESSAGE)
    monkeypatch.setattr(dkim, "RSASSA_PKCS1_v1_5_sign", signing._pure_python_rsa_sign)
    pure_python = signer.sign(MESSAGE)

    assert through_openssl == pure_python
    assert dkim.verify(through_openssl + MESSAGE, dnsfunc=lambda name, timeout=5: record)
