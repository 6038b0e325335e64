"""Checking that a webhook request comes from Mailhub, and reading its events.

Mailhub signs each request with the endpoint's secret (the ``secret`` of its creation):
``Mailhub-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``. The time is
inside what is signed, so refusing old times refuses a recorded request replayed later.

    from mailhub_client.webhooks import SIGNATURE_HEADER, InvalidSignature, events

    def mailhub_webhook(request):                       # a Django view
        try:
            received = events(SECRET, request.body, request.headers.get(SIGNATURE_HEADER, ""))
        except InvalidSignature:
            return HttpResponse(status=401)
        store(received)                                 # de-duplicate by event["id"]
        return HttpResponse(status=204)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from mailhub_client.types import EventDocument

__all__ = ["DEFAULT_TOLERANCE", "SIGNATURE_HEADER", "InvalidSignature", "events", "verify"]

SIGNATURE_HEADER = "Mailhub-Signature"
#: Seconds a signature stays acceptable, either way (clocks differ a little).
DEFAULT_TOLERANCE = 300.0


class InvalidSignature(ValueError):
    """The request is not Mailhub's: no signature, a wrong one, or one too old."""


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """True if ``body`` (the raw request body, as received) was signed with ``secret`` by
    Mailhub less than ``tolerance`` seconds from ``now`` (this machine's clock). ``header`` is
    the ``Mailhub-Signature`` header; any one of its ``v1`` signatures may match (a key rotation
    can send two). Never raises for a malformed header: it is simply not a valid signature."""
    if not isinstance(body, bytes):
        raise TypeError("verify the raw body, as bytes: a re-encoded body no longer matches")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False  # too old (a replay) or from the future (a forged time or a wrong clock)
    signed = f"{timestamp}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    # compare_digest takes the same time wherever the strings differ: a forger learns nothing
    # from how long the comparison took. Every signature is compared, not just up to a match.
    # Bytes, since compare_digest refuses str with non-ASCII characters (a hostile header).
    matches = [
        hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))
        for signature in signatures
    ]
    return any(matches)


def events(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> list[EventDocument]:
    """The events of a webhook request whose signature ``verify`` accepts; ``InvalidSignature``
    otherwise. Delivery is at least once: de-duplicate by each event's ``id``."""
    if not verify(secret, body, header, tolerance=tolerance, now=now):
        raise InvalidSignature("not a valid Mailhub-Signature for this body")
    payload = json.loads(body)
    received: list[EventDocument] = payload["events"]
    return received
