"""What goes out for one message: its SMTP transactions, each an envelope and the bytes sent.

A message is built once (``mime.build_mime``). Without a bounce domain it is one transaction
to all its recipients, its envelope sender the From address. With a bounce domain
(``MAILHUB_BOUNCE_DOMAIN``) each delivery is its own transaction whose envelope sender is that
delivery's VERP address (``tokens.verp_address``), so a bounce report sent back to it names the
delivery; the bytes stay the same for all.

With a DKIM signer (``domains.signing``) the bytes are signed as they are sent, once per
message. A signature that cannot be made does not stop the mail: it goes unsigned, with a
warning in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from deliveries.models import Delivery
from deliveries.smtp import Envelope
from deliveries.tokens import verp_address
from domains.signing import Signer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parcel:
    """One SMTP transaction: the deliveries it carries and its envelope."""

    deliveries: Sequence[Delivery]
    envelope: Envelope


def parcels(
    deliveries: Sequence[Delivery],
    *,
    sender: str,
    content: bytes,
    bounce_domain: str,
    signer: Signer | None = None,
) -> list[Parcel]:
    """The transactions that carry ``content`` to ``deliveries`` (see the module)."""
    content = _signed(content, signer)
    if not bounce_domain:
        recipients = [delivery.address for delivery in deliveries]
        return [Parcel(deliveries, Envelope(sender=sender, recipients=recipients, content=content))]
    return [
        Parcel(
            [delivery],
            Envelope(
                sender=verp_address(delivery.id, bounce_domain=bounce_domain),
                recipients=[delivery.address],
                content=content,
            ),
        )
        for delivery in deliveries
    ]


def _signed(content: bytes, signer: Signer | None) -> bytes:
    """``content`` headed by its DKIM signature, or as it is (no signer, or signing failed)."""
    if signer is None:
        return content
    try:
        return signer.sign(content) + content
    except Exception as exc:  # the mail matters more than its signature
        logger.warning("DKIM signing with %r failed, sent unsigned: %s", signer, exc)
        return content
