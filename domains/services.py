"""Every write about sending domains: adding one with its first DKIM key, checking its DNS, the
state that follows, key rotation, and deleting.

A domain's states: `pending` until its required records are found (the active DKIM key, and the
SPF include when MAILHUB_SPF_INCLUDE is set; DMARC and the bounce MX are reported, never
required); then `verified`. A verified domain whose records are missing at a later check turns
`failing` (still usable) and, MAILHUB_DOMAIN_GRACE_SECONDS after the first failed check,
`suspended` (not usable) until a check finds them again. A check DNS could not answer changes
nothing (but a failing domain past its grace is suspended all the same).

The first key of a domain is `active` from the start: nothing is signed before the domain is
verified, and verifying it means finding that very key. Rotation: ``dkim_key_rotate`` makes a
`pending` key under a new selector; once its record is published, ``dkim_key_activate`` makes it
the active one and retires the old one in one transaction; ``dkim_key_retire`` drops a pending key
never activated.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dns.resolver
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Client
from domains import conf, keys
from domains.dns import Check, check_bounce, check_dkim, check_dmarc, check_spf, make_resolver
from domains.errors import DkimKeyNotFound, DkimKeyProblem, DomainExists
from domains.models import DkimKey, SendingDomain
from domains.names import domain_normalise
from mailhub.errors import MailhubError

logger = logging.getLogger(__name__)

State = SendingDomain.State
KeyState = DkimKey.State

#: The letters after ``mh<yyyymm>`` when that selector is taken (a second rotation in a month).
_SELECTOR_SUFFIXES: list[str] = ["", *"bcdefghijklmnopqrstuvwxyz"]


def _algorithm(algorithm: str) -> str:
    if algorithm not in DkimKey.Algorithm.values:
        raise MailhubError(
            f"algorithm must be one of {', '.join(DkimKey.Algorithm.values)}.",
            code="invalid_algorithm",
        )
    return algorithm


def _new_selector(*, domain: str, now: datetime) -> str:
    """``mh<yyyymm>``, or with a letter after it when that is taken for this name (by this client
    or another that also added it: they would have to publish different keys at one name)."""
    base: str = f"mh{now:%Y%m}"
    taken = set(
        DkimKey.objects.filter(domain__domain=domain, selector__startswith=base).values_list(
            "selector", flat=True
        )
    )
    for suffix in _SELECTOR_SUFFIXES:
        candidate = base + suffix
        if candidate not in taken:
            return candidate
    return f"{base}{now:%d%H%M%S}"


def _new_key(*, domain: SendingDomain, algorithm: str, state: str, now: datetime) -> DkimKey:
    pair = keys.generate(algorithm)
    return DkimKey.objects.create(
        domain=domain,
        selector=_new_selector(domain=domain.domain, now=now),
        algorithm=algorithm,
        public_key=pair.public_key,
        private_key_encrypted=keys.encrypt(pair.private_pem),
        state=state,
        activated_at=now if state == KeyState.ACTIVE else None,
    )


def domain_create(
    *,
    client: Client,
    domain: str,
    allow_subdomains: bool = False,
    algorithm: str = DkimKey.Algorithm.RSA_SHA256,
) -> SendingDomain:
    """Add a sending domain (normalised: ``domains.names``) with its first, active DKIM key.

    ``DomainNameInvalid`` (400) for a name that is not one, ``DomainExists`` (409) when the client
    has it already, ``KeyStoreUnavailable`` (503) when no encryption key is configured.
    """
    name = domain_normalise(domain)
    _algorithm(algorithm)
    keys.encrypt(b"")  # fail before anything is written when keys cannot be stored
    now = timezone.now()
    try:
        with transaction.atomic():
            sending = SendingDomain.objects.create(
                client=client, domain=name, allow_subdomains=allow_subdomains
            )
            _new_key(domain=sending, algorithm=algorithm, state=KeyState.ACTIVE, now=now)
    except IntegrityError:
        raise DomainExists(name) from None
    logger.info("sending domain %s added for client %s", name, client.name)
    return sending


def domain_delete(*, domain_id: int) -> None:
    """Delete a domain and its keys: mail From: it is refused from now on."""
    SendingDomain.objects.filter(id=domain_id).delete()


# -- checking DNS --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    state: str
    failing_since: datetime | None
    verified_at: datetime | None


def domain_next_state(
    *,
    state: str,
    outcome: bool | None,
    failing_since: datetime | None,
    verified_at: datetime | None,
    now: datetime,
) -> Transition:
    """Where a check's outcome (True: every required record found, False: one missing, None: DNS
    could not tell) takes a domain. Pure."""
    if outcome is True:
        first = state not in (State.VERIFIED, State.FAILING) or verified_at is None
        return Transition(State.VERIFIED, None, now if first else verified_at)
    if state == State.VERIFIED and outcome is False:
        return Transition(State.FAILING, now, verified_at)
    if state == State.FAILING and (failing_since is None or now >= failing_since + conf.grace()):
        return Transition(State.SUSPENDED, failing_since, verified_at)
    return Transition(state, failing_since, verified_at)


def _outcome(checks: dict[str, Check]) -> bool | None:
    required = [check.ok for check in checks.values() if check.required]
    if False in required or not required:
        return False
    return None if None in required else True


def domain_checks(
    *, domain: SendingDomain, resolver: dns.resolver.Resolver | None = None
) -> dict[str, Check]:
    """Look up every record of ``domain`` now (no state changes): ``dkim:<selector>`` for each
    key not retired (required for the active one), ``spf``, ``dmarc`` and, with a bounce domain,
    ``bounce``."""
    resolver = resolver or make_resolver()
    checks: dict[str, Check] = {}
    for key in domain.dkim_keys.all():
        if key.state == KeyState.RETIRED:
            continue
        checks[f"dkim:{key.selector}"] = check_dkim(
            resolver,
            domain=domain.domain,
            selector=key.selector,
            public_key=key.public_key,
            required=key.state == KeyState.ACTIVE,
        )
    checks["spf"] = check_spf(resolver, domain=domain.domain, include=conf.spf_include())
    checks["dmarc"] = check_dmarc(resolver, domain=domain.domain)
    if conf.bounce_domain():
        checks["bounce"] = check_bounce(
            resolver, bounce_domain=conf.bounce_domain(), mx_host=conf.bounce_mx_host()
        )
    return checks


def domain_verify(
    *, domain_id: int, resolver: dns.resolver.Resolver | None = None
) -> SendingDomain:
    """Check the domain's records now, store what was found, and move its state accordingly.

    DNS is asked outside any transaction; the result is written under a row lock, so two checks
    at once each apply whole. A domain marked verified locally keeps its state: its checks are
    stored for information only.
    """
    domain = SendingDomain.objects.prefetch_related("dkim_keys").get(id=domain_id)
    checks = domain_checks(domain=domain, resolver=resolver)
    outcome = _outcome(checks)
    with transaction.atomic():
        domain = SendingDomain.objects.select_for_update().get(id=domain_id)
        now = timezone.now()
        before = domain.state
        if not domain.verified_locally:
            step = domain_next_state(
                state=domain.state,
                outcome=outcome,
                failing_since=domain.failing_since,
                verified_at=domain.verified_at,
                now=now,
            )
            domain.state = step.state
            domain.failing_since = step.failing_since
            domain.verified_at = step.verified_at
        domain.checks = {name: check.as_dict() for name, check in checks.items()}
        domain.last_checked_at = now
        domain.save(
            update_fields=["state", "failing_since", "verified_at", "checks", "last_checked_at"]
        )
    _log_change(domain, before, checks)
    return domain


def _log_change(domain: SendingDomain, before: str, checks: dict[str, Check]) -> None:
    if domain.state == before:
        return
    missing = "; ".join(
        f"{name}: {check.detail}"
        for name, check in checks.items()
        if check.required and not check.ok
    )
    level = logging.INFO if domain.state == State.VERIFIED else logging.WARNING
    logger.log(
        level,
        "sending domain %s of client %s: %s -> %s%s",
        domain.domain,
        domain.client_id,
        before,
        domain.state,
        f" ({missing})" if missing else "",
    )


def domains_reverify_due(*, limit: int = 50, budget_seconds: float = 20.0) -> int:
    """Check again the domains not checked for MAILHUB_DOMAIN_VERIFY_INTERVAL_SECONDS (oldest
    first, at most ``limit``, for about ``budget_seconds``: the tick shares the dispatch queue, and
    a DNS server that times out must not hold it), and suspend failing ones past their grace
    period. Returns how many were checked. Domains verified locally are left alone."""
    started = time.monotonic()
    now = timezone.now()
    due = list(
        SendingDomain.objects.filter(verified_locally=False)
        .filter(Q(last_checked_at=None) | Q(last_checked_at__lte=now - conf.verify_interval()))
        .order_by(F("last_checked_at").asc(nulls_first=True))
        .values_list("id", flat=True)[:limit]
    )
    resolver = make_resolver()
    checked = 0
    for domain_id in due:
        if time.monotonic() - started > budget_seconds:
            break  # the rest are the next tick's
        checked += 1
        try:
            domain_verify(domain_id=domain_id, resolver=resolver)
        except SendingDomain.DoesNotExist:
            continue  # deleted since
    return checked


def domain_mark_verified_locally(*, domain_id: int) -> SendingDomain:
    """Make a domain usable without DNS, for a stack that has none (development, the demo)."""
    now = timezone.now()
    with transaction.atomic():
        domain = SendingDomain.objects.select_for_update().get(id=domain_id)
        domain.verified_locally = True
        domain.state = State.VERIFIED
        domain.verified_at = domain.verified_at or now
        domain.failing_since = None
        domain.save(update_fields=["verified_locally", "state", "verified_at", "failing_since"])
    logger.info("sending domain %s marked verified locally", domain.domain)
    return domain


# -- DKIM keys -----------------------------------------------------------------------------------


def _key(*, domain_id: int, selector: str) -> DkimKey:
    try:
        return DkimKey.objects.select_related("domain").get(domain_id=domain_id, selector=selector)
    except DkimKey.DoesNotExist:
        raise DkimKeyNotFound(selector) from None


def dkim_key_rotate(*, domain_id: int, algorithm: str | None = None) -> DkimKey:
    """A new `pending` key under a new selector, of the active key's algorithm unless another is
    given: publish its record, then activate it. One rotation at a time."""
    domain = SendingDomain.objects.get(id=domain_id)
    active = domain.dkim_keys.filter(state=KeyState.ACTIVE).first()
    chosen = _algorithm(algorithm or (active.algorithm if active else DkimKey.Algorithm.RSA_SHA256))
    with transaction.atomic():
        SendingDomain.objects.select_for_update().get(id=domain_id)
        pending = domain.dkim_keys.filter(state=KeyState.PENDING).first()
        if pending is not None:
            raise DkimKeyProblem(
                f"Key {pending.selector} is waiting to be activated (or retired) already.",
                code="rotation_in_progress",
                extra={"selector": pending.selector},
            )
        key = _new_key(domain=domain, algorithm=chosen, state=KeyState.PENDING, now=timezone.now())
    logger.info("DKIM key %s made for %s (pending)", key.selector, domain.domain)
    return key


def dkim_key_activate(
    *, domain_id: int, selector: str, check_dns: bool = True, resolver: Any = None
) -> DkimKey:
    """Make a pending key the one that signs, retiring the active one. Its record must be found in
    DNS first (``check_dns=False`` skips that: a stack without DNS)."""
    key = _key(domain_id=domain_id, selector=selector)
    if key.state != KeyState.PENDING:
        raise DkimKeyProblem(
            f"Key {selector} is {key.state}, not pending.", code="dkim_key_not_pending"
        )
    if check_dns:
        check = check_dkim(
            resolver or make_resolver(),
            domain=key.domain.domain,
            selector=key.selector,
            public_key=key.public_key,
            required=True,
        )
        if check.ok is not True:
            raise DkimKeyProblem(
                f"Not activated: {check.detail}.",
                code="dkim_record_not_found",
                extra={"selector": selector},
            )
    now = timezone.now()
    with transaction.atomic():
        SendingDomain.objects.select_for_update().get(id=domain_id)
        DkimKey.objects.filter(domain_id=domain_id, state=KeyState.ACTIVE).update(
            state=KeyState.RETIRED, retired_at=now
        )
        updated = DkimKey.objects.filter(id=key.id, state=KeyState.PENDING).update(
            state=KeyState.ACTIVE, activated_at=now
        )
        if not updated:
            raise DkimKeyProblem(
                f"Key {selector} is no longer pending.", code="dkim_key_not_pending"
            )
    key.refresh_from_db()
    logger.info("DKIM key %s of %s activated", key.selector, key.domain.domain)
    return key


def dkim_key_retire(*, domain_id: int, selector: str) -> DkimKey:
    """Retire a pending key (an abandoned rotation). The active key is retired by activating
    another: a domain always has one that signs."""
    key = _key(domain_id=domain_id, selector=selector)
    if key.state == KeyState.ACTIVE:
        raise DkimKeyProblem(
            f"Key {selector} is the active key: activate another one to retire it.",
            code="dkim_key_active",
        )
    DkimKey.objects.filter(id=key.id, state=KeyState.PENDING).update(
        state=KeyState.RETIRED, retired_at=timezone.now()
    )
    key.refresh_from_db()
    return key


def dkim_keys_reencrypt() -> int:
    """Encrypt every stored private key again under the first of MAILHUB_DKIM_ENCRYPTION_KEYS
    (after a new one was put first); returns how many. Each key in its own short transaction."""
    count = 0
    for key_id in DkimKey.objects.values_list("id", flat=True).order_by("id"):
        with transaction.atomic():
            key = DkimKey.objects.select_for_update().get(id=key_id)
            key.private_key_encrypted = keys.reencrypt(key.private_key_encrypted)
            key.save(update_fields=["private_key_encrypted"])
        count += 1
    return count
