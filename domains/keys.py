"""DKIM key pairs: made here, their private halves encrypted at rest.

Keys are generated with the ``cryptography`` package (2048-bit RSA, or Ed25519) and the private
key is stored as a Fernet token of its PKCS#8 PEM, under the keys in
``MAILHUB_DKIM_ENCRYPTION_KEYS``: the first encrypts, every one decrypts (``MultiFernet``), so
the encryption key can be rotated by putting a new one first and running ``reencrypt``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from django.conf import settings

from mailhub.errors import MailhubError

RSA_SHA256 = "rsa-sha256"
ED25519_SHA256 = "ed25519-sha256"
RSA_BITS = 2048


class KeyStoreUnavailable(MailhubError):
    """No encryption key is configured, or none of them opens a stored key."""

    status = 503

    def __init__(self, message: str) -> None:
        super().__init__(message, code="dkim_keys_unavailable")


@dataclass(frozen=True)
class KeyPair:
    algorithm: str
    public_key: str  # the p= value of the DKIM record
    private_pem: bytes  # PKCS#8, unencrypted: encrypt it before it is stored

    def __repr__(self) -> str:
        return f"<KeyPair {self.algorithm}>"  # never the private key


def generate(algorithm: str = RSA_SHA256) -> KeyPair:
    """A new key pair for ``algorithm`` (``rsa-sha256``: 2048-bit RSA; ``ed25519-sha256``)."""
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == RSA_SHA256:
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    elif algorithm == ED25519_SHA256:
        private = ed25519.Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    else:
        raise ValueError(f"unknown DKIM algorithm {algorithm!r}")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return KeyPair(
        algorithm=algorithm, public_key=base64.b64encode(public).decode(), private_pem=pem
    )


def _fernet() -> MultiFernet:
    keys = settings.MAILHUB_DKIM_ENCRYPTION_KEYS
    if not keys:
        raise KeyStoreUnavailable(
            "MAILHUB_DKIM_ENCRYPTION_KEYS is not set: DKIM private keys cannot be stored or read"
        )
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(private_pem: bytes) -> bytes:
    """The private key as it is stored: a Fernet token under the first encryption key."""
    return _fernet().encrypt(private_pem)


def decrypt(token: bytes | memoryview) -> bytes:
    """The PEM private key of a stored token; ``KeyStoreUnavailable`` if no key opens it."""
    try:
        return _fernet().decrypt(bytes(token))
    except InvalidToken:
        raise KeyStoreUnavailable(
            "no key in MAILHUB_DKIM_ENCRYPTION_KEYS opens this DKIM key (was the key it was "
            "encrypted with removed?)"
        ) from None


def reencrypt(token: bytes | memoryview) -> bytes:
    """The same private key encrypted under the first encryption key (rotation)."""
    try:
        return _fernet().rotate(bytes(token))
    except InvalidToken:
        raise KeyStoreUnavailable(
            "no key in MAILHUB_DKIM_ENCRYPTION_KEYS opens this DKIM key"
        ) from None
