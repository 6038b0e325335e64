"""DKIM key pairs (``domains.keys``): generated in the formats DNS and dkimpy expect, stored only
encrypted, readable after the encryption key is rotated, and never shown."""

import base64

import dkim
import pytest
from cryptography.fernet import Fernet
from django.test import override_settings

from domains import keys

MESSAGE = b"From: a@shop.test\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n"


def test_an_rsa_key_signs_mail_that_verifies_against_its_published_record():
    pair = keys.generate(keys.RSA_SHA256)
    record = f"v=DKIM1; k=rsa; p={pair.public_key}".encode()

    signature = dkim.sign(MESSAGE, b"s1", b"shop.test", pair.private_pem)

    assert dkim.verify(signature + MESSAGE, dnsfunc=lambda name, timeout=5: record)
    assert b"a=rsa-sha256" in signature


def test_an_ed25519_public_key_is_its_32_raw_bytes():
    pair = keys.generate(keys.ED25519_SHA256)
    assert len(base64.b64decode(pair.public_key)) == 32
    assert pair.private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_a_stored_key_is_encrypted_and_reads_back():
    pair = keys.generate(keys.ED25519_SHA256)
    stored = keys.encrypt(pair.private_pem)
    assert pair.private_pem not in stored
    assert keys.decrypt(memoryview(stored)) == pair.private_pem


def test_after_rotation_old_keys_still_open_and_reencrypt_moves_them_to_the_new_key():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(MAILHUB_DKIM_ENCRYPTION_KEYS=[old]):
        stored = keys.encrypt(b"pem")
    with override_settings(MAILHUB_DKIM_ENCRYPTION_KEYS=[new, old]):
        assert keys.decrypt(stored) == b"pem"
        moved = keys.reencrypt(stored)
    with override_settings(MAILHUB_DKIM_ENCRYPTION_KEYS=[new]):
        assert keys.decrypt(moved) == b"pem"
        with pytest.raises(keys.KeyStoreUnavailable):
            keys.decrypt(stored)


def test_without_an_encryption_key_nothing_is_stored():
    with (
        override_settings(MAILHUB_DKIM_ENCRYPTION_KEYS=[]),
        pytest.raises(keys.KeyStoreUnavailable),
    ):
        keys.encrypt(b"pem")


def test_a_key_pair_never_shows_its_private_half():
    pair = keys.generate(keys.RSA_SHA256)
    assert "PRIVATE" not in repr(pair) and pair.private_pem.decode() not in str(pair)
