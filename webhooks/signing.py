"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>.<body>"`` with the endpoint's secret.

Sent as ``Mailhub-Signature: t=<unix seconds>,v1=<hex digest>``. The timestamp is inside what is
signed, so a receiver that also refuses old timestamps (the documented snippet allows five
minutes) rejects both forged and replayed requests. ``v1`` names the scheme; a receiver keeps
every ``v1=`` it finds, so a future key rotation can send two signatures at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "Mailhub-Signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def secret_generate() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(*, secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(*, secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret=secret, timestamp=timestamp, body=body)}"
