"""The bearer token that opens the metrics: Mailhub's ``/metrics`` and Flower's.

Free of Django models, so that Flower's process (``deploy/flowerconfig.py``) can use it as well
as the web process.
"""

from __future__ import annotations

import hmac


def bearer_token_matches(authorization: str, token: str) -> bool:
    """Whether an ``Authorization`` header is ``Bearer <token>`` (the scheme in any case)."""
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    # Compared in constant time: the answer's timing tells nothing about how much was right.
    return hmac.compare_digest(credentials.strip().encode(), token.encode())
