"""The server-side request forgery guard: which URLs and addresses a webhook may reach.

A webhook URL is chosen by a client, and Mailhub's workers call it from inside the network, so
an unguarded URL lets a client probe or attack what only Mailhub can reach: the cloud metadata
service at 169.254.169.254, an admin port on loopback, databases on private addresses.

The host is resolved and EVERY address it resolves to must be public; the request is then made
to the address that was checked (see ``webhooks.transport``), never resolved again, so a DNS
answer that changes between check and connect (DNS rebinding) cannot slip past the check.
Redirects are never followed for the same reason.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from deliveries.errors import MailhubError
from webhooks.conf import UrlPolicy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(MailhubError):
    """The URL is not one a webhook may call; the message says why, for the client to read."""

    def __init__(self, message: str) -> None:
        code = "webhook_url_refused"
        field_error = {"field": "url", "code": code, "message": message}
        super().__init__(message, code=code, extra={"errors": [field_error]})


@dataclass(frozen=True)
class Target:
    """A checked URL, split into what a request needs."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line

    @property
    def https(self) -> bool:
        return self.scheme == "https"


@dataclass(frozen=True)
class Destination:
    """A target together with the one address it was checked for: connect there and only there."""

    target: Target
    address: str


def url_parse(url: str, *, policy: UrlPolicy) -> Target:
    """Check the URL's shape (scheme, host, no credentials) without resolving it."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"Not a valid URL: {exc}.") from None
    allowed = {"https", "http"} if policy.allow_http else {"https"}
    if parts.scheme not in allowed:
        raise UnsafeUrl(
            "Webhook URLs must use https." if not policy.allow_http else "Use http or https."
        )
    if not parts.hostname:
        raise UnsafeUrl("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        # Requests are authenticated by their signature; credentials in a URL end up in logs.
        raise UnsafeUrl("Credentials in the URL are not supported; verify the signature instead.")
    if parts.fragment:
        raise UnsafeUrl("A URL fragment is never sent to a server; remove it.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or (443 if parts.scheme == "https" else 80),
        path=path,
    )


def address_refusal(address: IPAddress, *, policy: UrlPolicy) -> str | None:
    """Why a request to ``address`` is refused, or None when it is allowed."""
    # An IPv6 address can carry an IPv4 one (::ffff:127.0.0.1, 6to4, Teredo): judge that too.
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            candidates = [address.ipv4_mapped]  # it IS that IPv4 address
        candidates += [
            a for a in (address.sixtofour, (address.teredo or (None, None))[1]) if a is not None
        ]
    for candidate in candidates:
        reason = _refusal(candidate, policy)
        if reason:
            return reason
    return None


def _refusal(address: IPAddress, policy: UrlPolicy) -> str | None:
    # Order matters: Python counts loopback and link-local as "private" too.
    if address.is_loopback:
        return None if policy.allow_loopback else "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"  # 0.0.0.0 reaches this very machine
    if address.is_link_local:
        return "a link-local address"  # cloud metadata services live here
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private or not address.is_global:
        return None if policy.allow_private else "a private address"
    return None


def destination_resolve(target: Target, *, policy: UrlPolicy) -> Destination:
    """Resolve the target's host; refuse it unless every address is allowed; pin the first."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(f"The host {target.host!r} could not be resolved ({exc}).") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise UnsafeUrl(f"The host {target.host!r} has no address.")
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        reason = address_refusal(address, policy=policy)
        if reason:
            raise UnsafeUrl(
                f"The host {target.host!r} resolves to {address}, {reason}; "
                "webhooks may only call public addresses."
            )
    return Destination(target=target, address=addresses[0])


def url_check(url: str, *, policy: UrlPolicy) -> Destination:
    """Parse, resolve and check a URL; raise ``UnsafeUrl`` if a webhook may not call it."""
    return destination_resolve(url_parse(url, policy=policy), policy=policy)
