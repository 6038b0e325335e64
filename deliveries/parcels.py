"""What goes out for one message: its SMTP transactions, each an envelope and the bytes sent.

A message is built once (``mime.build_mime``). Without a bounce domain it is one transaction
to all its recipients, its envelope sender the From address. With a bounce domain
(``MAILHUB_BOUNCE_DOMAIN``) each delivery is its own transaction whose envelope sender is that
delivery's VERP address (``tokens.verp_address``), so a bounce report sent back to it names the
delivery; the bytes stay the same for all. With one-click unsubscribe (``wants_unsubscribe``)
each delivery is its own transaction too, its copy headed by its own ``List-Unsubscribe`` link.

With a DKIM signer (``domains.signing``) the bytes are signed as they are sent: once when every
recipient gets the same bytes, once per recipient when they differ. A signature that cannot be
made does not stop the mail: it goes unsigned, with a warning in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from deliveries.models import Delivery, Message, Priority
from deliveries.smtp import Envelope
from deliveries.tokens import UNSUBSCRIBE, delivery_token, verp_address
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
    unsubscribe_base: str = "",
) -> list[Parcel]:
    """The transactions that carry ``content`` to ``deliveries`` (see the module).

    ``unsubscribe_base``, when given, is the public URL each copy's unsubscribe link starts with.
    """
    if not bounce_domain and not unsubscribe_base:
        recipients = [delivery.address for delivery in deliveries]
        signed = _signed(content, signer)
        return [Parcel(deliveries, Envelope(sender=sender, recipients=recipients, content=signed))]
    shared = b"" if unsubscribe_base else _signed(content, signer)
    found = []
    for delivery in deliveries:
        own = (
            _signed(unsubscribe_headers(unsubscribe_base, delivery.id) + content, signer)
            if unsubscribe_base
            else shared
        )
        envelope_sender = (
            verp_address(delivery.id, bounce_domain=bounce_domain) if bounce_domain else sender
        )
        envelope = Envelope(sender=envelope_sender, recipients=[delivery.address], content=own)
        found.append(Parcel([delivery], envelope))
    return found


#: The header fields one-click unsubscribe writes; a message whose custom headers hold one of
#: them keeps its own (the API refuses both at once when the message asks for ``unsubscribe``).
LIST_UNSUBSCRIBE_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})


def wants_unsubscribe(message: Message) -> bool:
    """Whether each copy gets one-click unsubscribe links: as the message says, else for `low`
    priority mail (bulk, the kind RFC 8058 is for)."""
    if any(name.lower() in LIST_UNSUBSCRIBE_HEADERS for name in message.headers):
        return False
    if message.unsubscribe is not None:
        return message.unsubscribe
    return message.priority == Priority.LOW


def unsubscribe_url(base: str, delivery_id: int) -> str:
    """The one-click unsubscribe link of a delivery (``api.unsubscribe`` answers it)."""
    return f"{base}/u/{delivery_token(UNSUBSCRIBE, delivery_id)}"


def unsubscribe_headers(base: str, delivery_id: int) -> bytes:
    """RFC 8058's two header fields for one recipient's copy. The URL is printable ASCII without
    spaces (a validated setting of at most 200 characters, then ``/u/`` and a token of
    [0-9a-z.]): one line, which may pass 78 characters (a URL has nowhere to fold) but never
    RFC 5322's 998."""
    return (
        f"List-Unsubscribe: <{unsubscribe_url(base, delivery_id)}>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    ).encode("ascii")


def _signed(content: bytes, signer: Signer | None) -> bytes:
    """``content`` headed by its DKIM signature, or as it is (no signer, or signing failed)."""
    if signer is None:
        return content
    try:
        return signer.sign(content) + content
    except Exception as exc:  # the mail matters more than its signature
        logger.warning("DKIM signing with %r failed, sent unsigned: %s", signer, exc)
        return content
