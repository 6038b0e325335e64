"""The DNS records a sending domain needs, as text to publish: pure, no lookups.

Who publishes what: the client publishes, in its own zone, the DKIM key of each key not retired,
an SPF record that includes the operator's (MAILHUB_SPF_INCLUDE), and a DMARC policy; the
operator publishes, once for every client, the bounce domain's MX (MAILHUB_BOUNCE_DOMAIN).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

# What each record is for, as the API, the admin and the command show it.
DKIM = "dkim"
SPF = "spf"
DMARC = "dmarc"
BOUNCE = "bounce"

# The DMARC policy suggested to start with: reports only, nothing rejected, until the reports
# show that all of the domain's mail passes; then quarantine, then reject.
SUGGESTED_DMARC = "v=DMARC1; p=none"


@dataclass(frozen=True)
class Record:
    purpose: str  # dkim, spf, dmarc, bounce
    type: str  # TXT, MX
    name: str  # the owner name, without the trailing dot
    value: str  # what to publish (TXT: the text, one string however long; MX: "10 host")
    required: bool  # needed for the domain to be verified; otherwise advisory
    publisher: str  # "client" (in the sending domain's zone) or "operator" (once, for all)
    selector: str = ""  # the DKIM key's selector
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class KeyRecord:
    """What a DKIM key contributes: its selector, algorithm, public key and state."""

    selector: str
    algorithm: str
    public_key: str
    state: str


def dkim_value(*, algorithm: str, public_key: str) -> str:
    """The DKIM key record's text (RFC 6376 3.6.1; k=ed25519 from RFC 8463)."""
    key_type = "ed25519" if algorithm == "ed25519-sha256" else "rsa"
    return f"v=DKIM1; k={key_type}; p={public_key}"


def dkim_name(*, selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}"


def spf_value(include: str) -> str:
    """A whole SPF record allowing the operator's relays: for a domain that has none yet. A domain
    that has one adds ``include:<include>`` to it (one SPF record per domain, RFC 7208 3.2)."""
    return f"v=spf1 include:{include} ~all"


def records_to_publish(
    *,
    domain: str,
    keys: Iterable[KeyRecord],
    spf_include: str,
    bounce_domain: str,
    bounce_mx_host: str,
) -> list[Record]:
    """Every record ``domain`` should have, required ones first."""
    records = []
    for key in keys:
        if key.state == "retired":
            continue
        active = key.state == "active"
        records.append(
            Record(
                purpose=DKIM,
                type="TXT",
                name=dkim_name(selector=key.selector, domain=domain),
                value=dkim_value(algorithm=key.algorithm, public_key=key.public_key),
                required=active,
                publisher="client",
                selector=key.selector,
                note="signs the domain's mail"
                if active
                else "the next key (rotation): publish it, then activate it",
            )
        )
    if spf_include:
        records.append(
            Record(
                purpose=SPF,
                type="TXT",
                name=domain,
                value=spf_value(spf_include),
                required=True,
                publisher="client",
                note=f"or add include:{spf_include} to the domain's SPF record if it has one",
            )
        )
    records.append(
        Record(
            purpose=DMARC,
            type="TXT",
            name=f"_dmarc.{domain}",
            value=SUGGESTED_DMARC,
            required=False,
            publisher="client",
            note="start with p=none; move to quarantine, then reject, once reports are clean",
        )
    )
    if bounce_domain:
        records.append(
            Record(
                purpose=BOUNCE,
                type="MX",
                name=bounce_domain,
                value=f"10 {bounce_mx_host}" if bounce_mx_host else "",
                required=False,
                publisher="operator",
                note="where bounce reports return to (VERP); published once by the operator"
                + ("" if bounce_mx_host else ": an MX naming the host of the bounces process"),
            )
        )
    return sorted(records, key=lambda record: not record.required)
