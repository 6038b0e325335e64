"""Suppressions: the addresses a client's mail is never sent to (hard bounces, complaints, by
hand). Accepting mail reads them (``accept``); sending adds the hard bounces (``sending``)."""

from __future__ import annotations

from accounts.models import Client
from deliveries.models import Suppression


def suppression_add(*, client_id: int, address: str, reason: str, detail: str = "") -> bool:
    """Suppress an address for a client; return False if it already was (first reason kept)."""
    _, created = Suppression.objects.get_or_create(
        client_id=client_id,
        address=address.lower(),
        defaults={"reason": reason, "detail": detail[:1000]},
    )
    return created


def suppression_remove(*, client: Client, address: str) -> bool:
    """Allow mail to the address again; return False if it was not suppressed."""
    deleted, _ = Suppression.objects.filter(client=client, address=address.lower()).delete()
    return deleted > 0
