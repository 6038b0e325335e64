"""Domain names as a client types them, made into the one form Mailhub stores and compares.

``domain_normalise`` strips blanks and one trailing dot, lower-cases, and writes an
internationalised name as its IDNA A-label (``bücher.example`` -> ``xn--bcher-kva.example``,
Python's ``idna`` codec). It refuses, with ``DomainNameInvalid`` (a 400 problem), anything that
is not a host name a domain's mail can come from: line breaks in any form, NULs and other
control characters, lone surrogates, names longer than 253 characters or with a label longer
than 63, empty labels, wildcards, IP address literals, and characters a host name cannot hold.
Single-label names (``localhost``) are allowed: a development stack sends from them.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

from mailhub.errors import MailhubError

MAX_NAME = 253  # RFC 1035 2.3.4, written without the trailing dot
MAX_LABEL = 63
# Letters, digits and hyphens, not at either end (RFC 1123 2.1); A-labels fit it too.
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# What a typed domain may be before IDNA: anything longer is refused without encoding it.
_MAX_INPUT = 1024


class DomainNameInvalid(MailhubError):
    """A domain name Mailhub cannot accept as a sending domain."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="invalid_domain")


def domain_normalise(text: str) -> str:
    """The lower-case A-label form of ``text``, or ``DomainNameInvalid`` saying why not."""
    if not isinstance(text, str):
        raise DomainNameInvalid("A domain name is a string.")
    if len(text) > _MAX_INPUT:
        raise DomainNameInvalid(f"A domain name is at most {MAX_NAME} characters.")
    _refuse_unprintable(text)
    name = text.strip()
    if name.endswith("."):
        name = name[:-1]  # the root, as DNS writes it: example.com. is example.com
    if not name:
        raise DomainNameInvalid("Give a domain name, e.g. mail.example.com.")
    if "*" in name:
        raise DomainNameInvalid("A wildcard is not a domain; give the domain itself.")
    if _is_ip_literal(name):
        raise DomainNameInvalid("An IP address is not a domain; give a domain name.")
    if "@" in name:
        raise DomainNameInvalid("Give the domain alone, without the part before the @.")
    try:
        ascii_name = name.encode("idna").decode("ascii").lower()
        ascii_name.encode("ascii").decode("idna")  # an xn-- label must be valid punycode
    except UnicodeError:
        raise DomainNameInvalid(
            f"{_shown(name)} is not a valid domain name: a label is empty, longer than "
            f"{MAX_LABEL} characters, or holds characters IDNA cannot encode."
        ) from None
    if len(ascii_name) > MAX_NAME:
        raise DomainNameInvalid(f"A domain name is at most {MAX_NAME} characters (as A-labels).")
    for label in ascii_name.split("."):
        if len(label) > MAX_LABEL:
            raise DomainNameInvalid(f"A label of a domain name is at most {MAX_LABEL} characters.")
        if not _LABEL.fullmatch(label):
            raise DomainNameInvalid(
                f"{_shown(name)} is not a valid domain name: each label is letters, digits "
                "and hyphens, not starting or ending with a hyphen."
            )
    if _is_ip_literal(ascii_name):  # 127.0.0.1 written with full-width digits, say
        raise DomainNameInvalid("An IP address is not a domain; give a domain name.")
    return ascii_name


def _refuse_unprintable(text: str) -> None:
    # Checked before anything else, so that the message never quotes such a character.
    if len(f"x{text}x".splitlines()) > 1:  # every line break str.splitlines() knows
        raise DomainNameInvalid("A domain name cannot contain a line break.")
    for char in text:
        category = unicodedata.category(char)
        if category == "Cs":
            raise DomainNameInvalid("A domain name cannot contain a lone surrogate.")
        if category in ("Cc", "Cf", "Zl", "Zp"):
            raise DomainNameInvalid(
                "A domain name cannot contain control or invisible formatting characters."
            )


def _is_ip_literal(name: str) -> bool:
    candidate = name.strip("[]")
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        # All-numeric dotted names (1.2.3, 010.1.1.1) are read as addresses by some resolvers.
        return bool(re.fullmatch(r"[0-9.]+", candidate))
    return True


def _shown(name: str) -> str:
    """``name`` as quoted in a message: printable (checked already) and not too long."""
    return repr(name if len(name) <= 80 else name[:77] + "...")
