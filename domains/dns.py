"""What DNS says about a sending domain's records, looked up with dnspython.

Each check answers ``ok``: True (found and right), False (missing or wrong), or None (DNS could
not be asked: a timeout, every server failing). Only True and False are evidence about the
domain; a None leaves its state as it was, so that a resolver outage never suspends anybody.

- DKIM: a TXT record at ``<selector>._domainkey.<domain>`` whose ``p=`` is the key's public key
  (a CNAME to it is followed, as verifiers do).
- SPF: the domain's one ``v=spf1`` record has ``include:<MAILHUB_SPF_INCLUDE>``, itself or in a
  record it includes (or redirects to): one level of includes is followed, not more.
- DMARC: a ``v=DMARC1`` record at ``_dmarc.<domain>``, and its policy (``p=``).
- Bounce: MAILHUB_BOUNCE_DOMAIN has an MX (a CNAME is followed), naming
  MAILHUB_BOUNCE_MX_HOST when that is set.

Names are asked as absolute names (no search domains), without a cache: a check sees what DNS
says now.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from domains import conf

# Lookups answered "no such record": evidence that the record is missing.
_MISSING = (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer)
# How many include: and redirect= targets of one SPF record are looked into (RFC 7208 allows
# 10 lookups in all).
_MAX_SPF_TARGETS = 10


@dataclass(frozen=True)
class Check:
    ok: bool | None  # None: DNS could not be asked
    detail: str  # one sentence: what was found, or what is missing
    required: bool  # the domain is verified only when every required check is ok
    found: list[str] = field(default_factory=list)  # the records seen (TXT text, MX hosts)
    policy: str = ""  # DMARC: the p= tag

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Unknown(Exception):
    """DNS could not be asked (timeout, no server answered)."""


def make_resolver() -> dns.resolver.Resolver:
    """A resolver asking MAILHUB_DNS_RESOLVERS (or the system's servers), with EDNS so that a
    2048-bit DKIM key's record fits in one UDP answer (dnspython falls back to TCP otherwise)."""
    servers = conf.nameservers()
    try:
        resolver = dns.resolver.Resolver(configure=not servers)
    except dns.resolver.NoResolverConfiguration:
        resolver = dns.resolver.Resolver(configure=False)  # every lookup is then "unknown"
    if servers:
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(address, port) for address, port in servers
        ]
    resolver.timeout = resolver.lifetime = conf.dns_timeout()
    resolver.use_edns(0, 0, 1232)
    resolver.cache = None
    return resolver


def _lookup(resolver: dns.resolver.Resolver, name: str, rdtype: str) -> list[Any]:
    """The records of ``name``; [] if it has none; ``_Unknown`` if DNS could not say."""
    try:
        answer = resolver.resolve(
            dns.name.from_text(name), dns.rdatatype.from_text(rdtype), search=False
        )
    except _MISSING:
        return []
    except (dns.exception.DNSException, OSError) as exc:
        raise _Unknown(f"{rdtype} {name}: {type(exc).__name__}") from None
    return list(answer)


def _txt(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    """The TXT records of ``name``, each as one text: its strings joined, as DKIM and SPF do."""
    return [
        b"".join(record.strings).decode("ascii", errors="replace")
        for record in _lookup(resolver, name, "TXT")
    ]


def _tags(text: str) -> dict[str, str]:
    """``k=v; k=v`` tag lists (DKIM, DMARC), keys lower-cased, blanks around values removed."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, equals, value = part.partition("=")
        if equals:
            tags.setdefault(key.strip().lower(), value.strip())
    return tags


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_dkim(
    resolver: dns.resolver.Resolver, *, domain: str, selector: str, public_key: str, required: bool
) -> Check:
    name = f"{selector}._domainkey.{domain}"
    try:
        texts = _txt(resolver, name)
    except _Unknown as exc:
        return Check(ok=None, detail=f"DNS could not be asked ({exc})", required=required)
    keys = ["".join(_tags(text).get("p", "").split()) for text in texts]
    if public_key in keys:
        return Check(ok=True, detail=f"the key is published at {name}", required=required)
    if any(keys):
        detail = f"{name} publishes a different key: publish this key's record instead"
    else:
        detail = f"no DKIM key record at {name}"
    return Check(ok=False, detail=detail, required=required, found=[_short(t) for t in texts])


def _spf_records(texts: Iterable[str]) -> list[str]:
    return [
        text for text in texts if text.lower() == "v=spf1" or text.lower().startswith("v=spf1 ")
    ]


def _spf_targets(record: str) -> list[str]:
    """The domains an SPF record includes or redirects to, lower-case."""
    targets = []
    for term in record.split()[1:]:
        lowered = term.lower().lstrip("+")
        for prefix in ("include:", "redirect="):
            if lowered.startswith(prefix):
                targets.append(lowered[len(prefix) :].rstrip("."))
    return targets


def check_spf(resolver: dns.resolver.Resolver, *, domain: str, include: str) -> Check:
    required = bool(include)
    try:
        records = _spf_records(_txt(resolver, domain))
    except _Unknown as exc:
        return Check(ok=None, detail=f"DNS could not be asked ({exc})", required=required)
    found = [_short(record) for record in records]
    if not records:
        detail = f"{domain} has no SPF record" + (
            f": publish one with include:{include}" if include else ""
        )
        return Check(ok=False, detail=detail, required=required)
    if len(records) > 1:
        detail = f"{domain} has {len(records)} SPF records; receivers ignore all of them (RFC 7208)"
        return Check(ok=False, detail=detail, required=required, found=found)
    if not include:
        return Check(ok=True, detail=f"{domain} has an SPF record", required=False, found=found)
    targets = _spf_targets(records[0])
    if include in targets:
        return Check(
            ok=True, detail=f"the SPF record includes {include}", required=True, found=found
        )
    # One level deeper: a record that includes another (the client's ESP-of-ESPs, say) which
    # includes ours. Deeper chains are not followed; the detail says so.
    for target in targets[:_MAX_SPF_TARGETS]:
        try:
            inner = _spf_records(_txt(resolver, target))
        except _Unknown as exc:
            return Check(ok=None, detail=f"DNS could not be asked ({exc})", required=True)
        if inner and include in _spf_targets(inner[0]):
            return Check(
                ok=True,
                detail=f"the SPF record includes {include} through {target}",
                required=True,
                found=found,
            )
    detail = (
        f"the SPF record does not include {include} (one level of include: is followed): "
        f"add include:{include}"
    )
    return Check(ok=False, detail=detail, required=True, found=found)


def check_dmarc(resolver: dns.resolver.Resolver, *, domain: str) -> Check:
    name = f"_dmarc.{domain}"
    try:
        texts = _txt(resolver, name)
    except _Unknown as exc:
        return Check(ok=None, detail=f"DNS could not be asked ({exc})", required=False)
    records = [text for text in texts if text.replace(" ", "").upper().startswith("V=DMARC1")]
    if len(records) != 1:
        detail = f"no DMARC record at {name}" if not records else f"{name} has several records"
        return Check(ok=False, detail=detail, required=False, found=[_short(t) for t in records])
    policy = _tags(records[0]).get("p", "").lower()
    detail = f"DMARC policy p={policy or '(none given)'}"
    return Check(ok=True, detail=detail, required=False, found=[_short(records[0])], policy=policy)


def check_bounce(resolver: dns.resolver.Resolver, *, bounce_domain: str, mx_host: str) -> Check:
    try:
        exchanges = [
            str(record.exchange).rstrip(".").lower()
            for record in _lookup(resolver, bounce_domain, "MX")
        ]
    except _Unknown as exc:
        return Check(ok=None, detail=f"DNS could not be asked ({exc})", required=False)
    if not exchanges:
        return Check(ok=False, detail=f"{bounce_domain} has no MX record", required=False)
    if mx_host and mx_host not in exchanges:
        detail = f"the MX of {bounce_domain} does not name {mx_host}"
        return Check(ok=False, detail=detail, required=False, found=exchanges)
    return Check(ok=True, detail=f"{bounce_domain} has its MX", required=False, found=exchanges)
