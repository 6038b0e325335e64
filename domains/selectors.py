"""Reads of sending domains: what a client may send from, and its domains as it sees them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Count, Prefetch, QuerySet
from django.utils import timezone

from accounts.models import Client
from domains import conf
from domains.models import DkimKey, SendingDomain
from domains.records import KeyRecord, Record, records_to_publish

State = SendingDomain.State


def domains_for_client(*, client: Client) -> QuerySet[SendingDomain]:
    """The client's sending domains with their keys, by name."""
    return (
        SendingDomain.objects.filter(client=client)
        .prefetch_related(Prefetch("dkim_keys", queryset=DkimKey.objects.order_by("created_at")))
        .order_by("domain", "id")
    )


def domain_get_for_client(*, client: Client, domain_id: int) -> SendingDomain | None:
    return domains_for_client(client=client).filter(id=domain_id).first()


def domain_by_name(*, client: Client, domain: str) -> SendingDomain | None:
    return domains_for_client(client=client).filter(domain=domain).first()


def domain_records(*, domain: SendingDomain) -> list[Record]:
    """What to publish in DNS for ``domain`` (its keys read through ``dkim_keys``)."""
    return records_to_publish(
        domain=domain.domain,
        keys=[
            KeyRecord(k.selector, k.algorithm, k.public_key, k.state)
            for k in domain.dkim_keys.all()
        ],
        spf_include=conf.spf_include(),
        bounce_domain=conf.bounce_domain(),
        bounce_mx_host=conf.bounce_mx_host(),
    )


def domain_usable(
    *, state: str, failing_since: datetime | None, now: datetime, test_mode: bool = False
) -> bool:
    """May mail come From: a domain in this state? Verified, or failing within the grace period.

    Test-mode mail may use any domain the client has added, in any state: nothing is sent, so
    DNS need not be ready, but a From the client never registered is refused as it would be live.
    """
    if test_mode or state == State.VERIFIED:
        return True
    return state == State.FAILING and (failing_since is None or now < failing_since + conf.grace())


# Run by every accept (once per call, whatever the number of messages): plain SQL over the
# (client, domain) unique index.
_SENDER_DOMAINS_SQL = (
    "SELECT domain, allow_subdomains, state, failing_since FROM domains_sendingdomain "
    "WHERE client_id = %s AND domain = ANY(%s)"
)


def _suffixes(domain: str) -> list[str]:
    """``a.b.example`` -> [``a.b.example``, ``b.example``, ``example``]."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def sender_domains_refused(
    *, client_id: int, domains: Iterable[str], test_mode: bool = False, now: datetime | None = None
) -> dict[str, str]:
    """Of ``domains`` (lower-case, as in the addresses' domain part), those the client may not send
    from, each with the reason in one sentence; one query, whatever their number."""
    wanted = set(domains)
    if not wanted:
        return {}
    candidates = sorted({suffix for domain in wanted for suffix in _suffixes(domain)})
    with connection.cursor() as cursor:
        cursor.execute(_SENDER_DOMAINS_SQL, [client_id, candidates])
        rows = {row[0]: row[1:] for row in cursor.fetchall()}
    if not rows:  # none of them is the client's: no need for the clock
        return {domain: _why(domain, None) for domain in wanted}
    now = now or timezone.now()
    refused = {}
    for domain in wanted:
        exact = rows.get(domain)
        matches = [exact] if exact else []
        matches += [row for suffix in _suffixes(domain)[1:] if (row := rows.get(suffix)) and row[0]]
        if any(
            domain_usable(state=state, failing_since=since, now=now, test_mode=test_mode)
            for _, state, since in matches
        ):
            continue
        refused[domain] = _why(domain, matches[0] if matches else None)
    return refused


def _why(domain: str, row: tuple[Any, ...] | None) -> str:
    if row is None:
        return (
            f"{domain} is not one of this client's sending domains: add it and publish its DNS "
            "records, then mail may come From: it once it is verified."
        )
    _, state, failing_since = row
    if state == State.PENDING:
        return f"{domain} is not verified yet: publish its DNS records and verify it."
    since = f" since {failing_since:%Y-%m-%d %H:%M} UTC" if failing_since else ""
    return (
        f"{domain} is suspended: its DNS records are missing{since}; publish them again and "
        "verify it."
    )


def sender_domain_problem(*, client_id: int, address: str, test_mode: bool = False) -> str:
    """Why the client may not send From: ``address`` ("" if it may), for an entry point that
    checks a sender once before many messages (``bulk_send``). Honours
    MAILHUB_ALLOW_UNVERIFIED_DOMAINS as the accept does."""
    if conf.allow_unverified():
        return ""
    domain = address.rpartition("@")[2].lower()
    refused = sender_domains_refused(client_id=client_id, domains=[domain], test_mode=test_mode)
    return refused.get(domain, "")


def domain_state_counts() -> dict[str, int]:
    """Sending domains by state, every state present (0 when none): for /metrics."""
    counts = dict.fromkeys(State.values, 0)
    for state, count in SendingDomain.objects.values_list("state").annotate(n=Count("id")):
        counts[state] = count
    return counts
