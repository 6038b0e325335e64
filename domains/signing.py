"""DKIM signatures for the mail a worker sends (dkimpy).

A message is signed with the active key of the client's sending domain its From address belongs
to: the domain itself, or the nearest parent domain that allows subdomains, while that domain is
`verified` or `failing` (still in its grace period). The keys of a whole task are found in one
query (``signers_for``); decrypted keys are kept per process for a few minutes, by key id, so
a worker decrypts each key about once per ``_KEY_CACHE_SECONDS``.

A ``Signer`` signs the exact bytes that are sent and returns the ``DKIM-Signature`` field to
put in front of them. dkimpy canonicalizes and writes the field; its RSA step runs through
OpenSSL (``rsa_pkcs1v15_sign``, below).
"""

from __future__ import annotations

import base64
import functools
import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from django.db import connection

from domains import keys
from domains.models import SendingDomain

logger = logging.getLogger(__name__)

#: The header fields signed when present (RFC 6376 5.4.1's recommendations, and RFC 8058's).
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"reply-to",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)
_SIGNED = frozenset(SIGNED_HEADERS)
#: Signed once more than they occur, so that none can be added after signing.
_OVERSIGNED = (b"from",)
_CANONICALIZE = (b"relaxed", b"relaxed")
_FIELD_NAME = re.compile(rb"^([!-9;-~]+):", re.MULTILINE)
_USABLE_STATES = (SendingDomain.State.VERIFIED.value, SendingDomain.State.FAILING.value)

# Raw SQL, as in deliveries.services.sending: building it with the ORM cost more CPU per task
# than running it. Each (client, domain) has at most one active key (`dkim_key_one_active`).
_ACTIVE_KEYS_SQL = """
SELECT k.id, k.selector, k.algorithm, k.private_key_encrypted, d.client_id, d.domain,
       d.allow_subdomains
FROM domains_dkimkey k
JOIN domains_sendingdomain d ON d.id = k.domain_id
WHERE k.state = 'active' AND d.state = ANY(%(states)s::text[])
  AND d.client_id = ANY(%(clients)s::bigint[]) AND d.domain = ANY(%(domains)s::text[])
"""

_KEY_CACHE_SECONDS = 300.0
_key_cache: dict[int, tuple[float, bytes]] = {}  # key id -> (expiry, key as dkimpy takes it)
_key_cache_lock = threading.Lock()


@dataclass(frozen=True)
class Signer:
    """One active DKIM key, ready to sign."""

    key_id: int
    domain: str  # d=
    selector: str  # s=
    algorithm: str  # rsa-sha256 or ed25519-sha256
    private_key: bytes  # the PEM (RSA) or the base64 seed (Ed25519), as dkimpy takes them

    def __repr__(self) -> str:
        return f"<Signer {self.selector}._domainkey.{self.domain} {self.algorithm}>"

    def sign(self, content: bytes) -> bytes:
        """The ``DKIM-Signature`` field (CRLF-terminated) for ``content``, the bytes sent."""
        header_end = content.find(b"\r\n\r\n")
        present = _FIELD_NAME.findall(content if header_end < 0 else content[: header_end + 2])
        names = [name.lower() for name in present if name.lower() in _SIGNED]
        signature: bytes = dkim.sign(
            content,
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self.private_key,
            signature_algorithm=self.algorithm.encode("ascii"),
            include_headers=[*names, *_OVERSIGNED],
            canonicalize=_CANONICALIZE,
        )
        return signature


# -- RSA through OpenSSL ------------------------------------------------------------------------
# dkimpy computes RSA signatures in pure Python: measured 16 ms of CPU for one 2048-bit
# signature, more than the rest of a delivery. Its signer calls the module-level
# ``RSASSA_PKCS1_v1_5_sign(hash, key)`` with the hash of what it signs and the key it parsed;
# Mailhub replaces that one function with the same operation through ``cryptography``
# (OpenSSL). PKCS#1 v1.5 signatures are deterministic: the bytes are the same, a unit test
# holds them equal, only faster. Everything else (canonicalization, the header) stays dkimpy's.

#: The hashes Mailhub signs with (rsa-sha256); any other takes dkimpy's own way.
_PREHASHED = {"sha256": Prehashed(hashes.SHA256())}
_openssl_keys: dict[int, rsa.RSAPrivateKey] = {}  # modulus -> the same key, as OpenSSL's
_pure_python_rsa_sign = dkim.RSASSA_PKCS1_v1_5_sign


def _openssl_rsa_key(key: dict[str, int]) -> rsa.RSAPrivateKey:
    """dkimpy's parsed RSA key as a ``cryptography`` key (made once per key and process)."""
    private = _openssl_keys.get(key["modulus"])
    if private is None:
        public = rsa.RSAPublicNumbers(key["publicExponent"], key["modulus"])
        private = rsa.RSAPrivateNumbers(
            p=key["prime1"],
            q=key["prime2"],
            d=key["privateExponent"],
            dmp1=key["exponent1"],
            dmq1=key["exponent2"],
            iqmp=key["coefficient"],
            public_numbers=public,
        ).private_key()
        _openssl_keys[key["modulus"]] = private
    return private


def rsa_pkcs1v15_sign(hash_object: Any, key: dict[str, int]) -> bytes:
    """``dkim.crypto.RSASSA_PKCS1_v1_5_sign``, through OpenSSL."""
    prehashed = _PREHASHED.get(hash_object.name)
    if prehashed is None:
        signature: bytes = _pure_python_rsa_sign(hash_object, key)
        return signature
    return _openssl_rsa_key(key).sign(hash_object.digest(), padding.PKCS1v15(), prehashed)


dkim.RSASSA_PKCS1_v1_5_sign = rsa_pkcs1v15_sign
# dkimpy also parses the PEM key (ASN.1, in pure Python: ~1 ms) on every signature; a worker
# signs with a handful of keys, each parsed once. (Its result is only read.)
dkim.parse_pem_private_key = functools.lru_cache(maxsize=64)(dkim.parse_pem_private_key)


def from_domain(address: str) -> str:
    """The domain of a From address, lower-case ("" if it has none)."""
    _, at, domain = address.rpartition("@")
    return domain.lower().rstrip(".") if at else ""


def _candidates(domain: str) -> list[str]:
    """``domain`` and each parent domain of it, nearest first (without the bare TLD)."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(max(len(labels) - 1, 1))]


def signers_for(senders: Iterable[tuple[int, str]]) -> dict[tuple[int, str], Signer]:
    """The signer of each (client id, From domain) that has one, in one query.

    A key that cannot be decrypted is logged and left out: that mail goes unsigned.
    """
    wanted = {(client_id, domain) for client_id, domain in senders if domain}
    if not wanted:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            _ACTIVE_KEYS_SQL,
            {
                "states": list(_USABLE_STATES),
                "clients": sorted({client_id for client_id, _ in wanted}),
                "domains": sorted({c for _, domain in wanted for c in _candidates(domain)}),
            },
        )
        rows = cursor.fetchall()
    found = {(row[4], row[5]): row for row in rows}
    signers: dict[tuple[int, str], Signer] = {}
    for client_id, domain in wanted:
        for depth, candidate in enumerate(_candidates(domain)):
            row = found.get((client_id, candidate))
            if row is None or (depth and not row[6]):
                continue
            key_id, selector, algorithm, encrypted = row[:4]
            try:
                private_key = _private_key(key_id, algorithm, encrypted)
            except Exception as exc:
                logger.warning(
                    "DKIM key %s of %s cannot be used, mail from it goes unsigned: %s",
                    key_id,
                    candidate,
                    exc,
                )
                break
            signers[(client_id, domain)] = Signer(
                key_id=key_id,
                domain=candidate,
                selector=selector,
                algorithm=algorithm,
                private_key=private_key,
            )
            break
    return signers


def _private_key(key_id: int, algorithm: str, encrypted: bytes | memoryview) -> bytes:
    """The key as dkimpy takes it, decrypted at most once per ``_KEY_CACHE_SECONDS``."""
    now = time.monotonic()
    with _key_cache_lock:
        cached = _key_cache.get(key_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    private_key = dkimpy_key(algorithm, keys.decrypt(encrypted))
    with _key_cache_lock:
        _key_cache[key_id] = (now + _KEY_CACHE_SECONDS, private_key)
    return private_key


def dkimpy_key(algorithm: str, private_pem: bytes) -> bytes:
    """What dkimpy signs with: the PKCS#8 PEM as it is for RSA; for Ed25519 the base64 of the
    32-byte seed (RFC 8463), which it hands to PyNaCl."""
    if algorithm != keys.ED25519_SHA256:
        return private_pem
    private = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise ValueError("an ed25519-sha256 DKIM key that is not an Ed25519 key")
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(seed)
