"""Signed tokens that name one delivery, for addresses and links that come back to Mailhub from
outside: the VERP envelope sender a bounce report is sent to, and a one-click unsubscribe link.

A token is ``<delivery id in base 36>.<MAC>``: the MAC is an HMAC-SHA256 of the purpose and the
id under a key derived from ``SECRET_KEY`` (Django's ``salted_hmac``), cut to 80 bits and
written in lower-case base 32, so a token survives mail systems that lower-case the local part
of an address, and a token made for one purpose is worthless for another. Tokens made under a
key in ``SECRET_KEY_FALLBACKS`` are still read, so the secret can be rotated.

Reading never raises: anything that is not a token this deployment made reads as ``None``.
"""

from __future__ import annotations

import base64
import hmac
import re

from django.conf import settings
from django.utils.crypto import salted_hmac

#: What a token is for; each purpose has its own key.
BOUNCE = "bounce"
UNSUBSCRIBE = "unsubscribe"
_PURPOSES = frozenset({BOUNCE, UNSUBSCRIBE})

_MAC_BYTES = 10  # 80 bits: 16 characters of base 32
_TOKEN = re.compile(r"([0-9a-z]{1,13})\.([a-z2-7]{16})")
#: The local part of a VERP address before its token.
VERP_PREFIX = "bounce+"
_MAX_ID = 2**63 - 1  # a bigint


def _mac(purpose: str, delivery_id: int, secret: str | bytes) -> str:
    digest = salted_hmac(
        f"mailhub.tokens.{purpose}", str(delivery_id), secret=secret, algorithm="sha256"
    ).digest()
    return base64.b32encode(digest[:_MAC_BYTES]).decode("ascii").lower()


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = digits[digit] + text
        if not number:
            return text


def delivery_token(purpose: str, delivery_id: int) -> str:
    """The token naming ``delivery_id`` for ``purpose`` (``BOUNCE`` or ``UNSUBSCRIBE``)."""
    if purpose not in _PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    if not 0 < delivery_id <= _MAX_ID:
        raise ValueError(f"not a delivery id: {delivery_id!r}")
    return f"{_base36(delivery_id)}.{_mac(purpose, delivery_id, settings.SECRET_KEY)}"


def read_delivery_token(purpose: str, token: str) -> int | None:
    """The delivery id ``token`` names, if this deployment made it for ``purpose``; else None."""
    if purpose not in _PURPOSES or not isinstance(token, str):
        return None
    match = _TOKEN.fullmatch(token.lower())
    if match is None:
        return None
    delivery_id = int(match[1], 36)
    if not 0 < delivery_id <= _MAX_ID:
        return None
    for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]:
        if hmac.compare_digest(_mac(purpose, delivery_id, secret), match[2]):
            return delivery_id
    return None


def verp_address(delivery_id: int, *, bounce_domain: str) -> str:
    """The envelope sender that brings a bounce report about ``delivery_id`` back to Mailhub."""
    return f"{VERP_PREFIX}{delivery_token(BOUNCE, delivery_id)}@{bounce_domain}"


def delivery_of_verp_address(address: str, *, bounce_domain: str) -> int | None:
    """The delivery a report sent to ``address`` is about, when ``address`` is a VERP address
    on ``bounce_domain`` with a token this deployment made; else None."""
    if not isinstance(address, str) or not bounce_domain:
        return None
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or domain.lower().rstrip(".") != bounce_domain.lower():
        return None
    if not local.lower().startswith(VERP_PREFIX):
        return None
    return read_delivery_token(BOUNCE, local[len(VERP_PREFIX) :])
