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
import re
import socket
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from mailhub.errors import MailhubError
from webhooks.conf import UrlPolicy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The longest webhook URL accepted (the column holds as much).
MAX_URL_LENGTH = 2000


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
    """Check the URL's shape without resolving it; return what a request to it needs.

    Strict on purpose: the URL is stored and later requested exactly as written, so it must be
    ASCII from RFC 3986's alphabet alone (no white space or control character anywhere, no line
    break in any form), name an http(s) scheme in lower case, a host, no credentials, an
    explicit port only from 1 to 65535, and no fragment; and it must read back unchanged through
    ``urllib.parse``. Raises ``UnsafeUrl`` naming the first problem.
    """
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    _refuse_characters(url)
    scheme, sep, rest = url.partition("://")
    allowed = ("https", "http") if policy.allow_http else ("https",)
    if not sep or scheme.lower() not in allowed:
        raise UnsafeUrl(f"Webhook URLs must start with {' or '.join(f'{a}://' for a in allowed)}.")
    if scheme not in allowed:
        raise UnsafeUrl(f"Write the scheme in lower case: {scheme.lower()}://")
    if "#" in url:
        raise UnsafeUrl("A URL fragment is never sent to a server; remove it.")
    netloc = _NETLOC_END.split(rest, maxsplit=1)[0]
    if "@" in netloc:
        # Requests are authenticated by their signature; credentials in a URL end up in logs.
        raise UnsafeUrl("Credentials in the URL are not supported; verify the signature instead.")
    host, port = _host_and_port(netloc)
    target = rest[len(netloc) :]
    _, question_mark, query = target.partition("?")
    if question_mark and not query:
        raise UnsafeUrl("The URL ends with an empty query ('?' with nothing after it); drop it.")
    if urlunsplit(urlsplit(url)) != url:  # what is checked is exactly what is requested
        raise UnsafeUrl("The URL does not read back unchanged; write it in its plain form.")
    return Target(
        scheme=scheme,
        host=host,
        port=port or (443 if scheme == "https" else 80),
        # An empty path is "/" on the request line (RFC 9112 3.2.1), before a query too.
        path=target if target.startswith("/") else f"/{target}",
    )


#: RFC 3986's characters (unreserved, reserved, and "%" of percent-encoding); anything else is
#: refused rather than encoded, so that the stored URL is the request target byte for byte.
_URL_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%"
)
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_NETLOC_END = re.compile(r"[/?#]")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_PORT = re.compile(r"[0-9]{1,5}")


def _refuse_characters(url: str) -> None:
    for position, char in enumerate(url, start=1):
        if char in _URL_CHARACTERS:
            continue
        where = f"(U+{ord(char):04X}) at character {position}"
        if len(f"a{char}b".splitlines()) > 1:
            raise UnsafeUrl(f"The URL holds a line break {where}; a URL may hold none.")
        if char.isspace() or unicodedata.category(char)[0] in {"C", "Z"}:
            raise UnsafeUrl(
                f"The URL holds white space or a control character {where}; a URL may hold none."
            )
        if not char.isascii():
            raise UnsafeUrl(
                f"The URL holds a non-ASCII character {where}: write the host in its xn-- "
                "(IDNA) form and percent-encode the rest."
            )
        raise UnsafeUrl(
            f"The URL holds the character {char!r} {where}, which a URL may only hold "
            "percent-encoded."
        )
    bad = _BAD_PERCENT.search(url)
    if bad:
        raise UnsafeUrl(
            f"The '%' at character {bad.start() + 1} does not start a percent-encoded byte "
            "(such as %20)."
        )


def _host_and_port(netloc: str) -> tuple[str, int | None]:
    """The host (lower case, an IPv6 address without its brackets) and the explicit port."""
    if netloc.startswith("["):
        literal, bracket, after = netloc[1:].partition("]")
        if not bracket or "%" in literal or (after and not after.startswith(":")):
            raise UnsafeUrl(f"The host {netloc!r} is not a valid IPv6 address.")
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise UnsafeUrl(f"The host {netloc!r} is not a valid IPv6 address.") from None
        host = literal.lower()
        port_text = after[1:] if after else None
    else:
        host, colon, port_text = netloc.partition(":")
        if not colon:
            port_text = None
        if not host:
            raise UnsafeUrl("The URL has no host.")
        name = host.removesuffix(".")
        if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
            raise UnsafeUrl(f"The host {host!r} is not a valid host name.")
        host = host.lower()
    if port_text is None:
        return host, None
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise UnsafeUrl(f"The port {port_text!r} is not a number from 1 to 65535.")
    return host, int(port_text)


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
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
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
