"""Sending domains checked against a real DNS server on loopback (tests/support/dns_server.py):
the records a domain is told to publish verify it, their absence makes it fail and, after the
grace period, suspends it; a DNS server that does not answer changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from domains.models import DkimKey, SendingDomain
from domains.selectors import domain_records, sender_domains_refused
from domains.services import (
    dkim_key_activate,
    dkim_key_retire,
    dkim_key_rotate,
    domain_create,
    domain_verify,
    domains_reverify_due,
)
from mailhub.errors import MailhubError
from tests.support.dns_server import DnsServer

pytestmark = pytest.mark.integration

SPF_INCLUDE = "_spf.mailhub.test"


def publish(dns: DnsServer, domain: SendingDomain, *, purposes=("dkim", "spf", "dmarc")) -> None:
    """Publish what the domain is told to publish, as its owner would."""
    domain = SendingDomain.objects.get(id=domain.id)
    for record in domain_records(domain=domain):
        if record.purpose in purposes and record.publisher == "client":
            dns.txt(record.name, record.value)


def fresh(domain: SendingDomain) -> SendingDomain:
    return SendingDomain.objects.get(id=domain.id)


def test_a_new_domain_is_pending_with_one_active_key_under_a_dated_selector(acme):
    domain = domain_create(client=acme.client, domain="Shop.Test")
    [key] = domain.dkim_keys.all()
    assert (domain.domain, domain.state) == ("shop.test", "pending")
    assert key.state == "active" and key.algorithm == "rsa-sha256"
    assert key.selector == f"mh{timezone.now():%Y%m}"
    assert bytes(key.private_key_encrypted)[:5] != b"-----"  # stored encrypted


def test_the_published_records_verify_the_domain(acme, dns):
    domain = domain_create(client=acme.client, domain="shop.test")
    assert domain_verify(domain_id=domain.id).state == "pending"
    publish(dns, domain)
    verified = domain_verify(domain_id=domain.id)
    assert verified.state == "verified" and verified.verified_at and verified.last_checked_at
    assert verified.checks[f"dkim:{domain.dkim_keys.get().selector}"]["ok"] is True
    assert verified.checks["dmarc"] == {
        "ok": True,
        "detail": "DMARC policy p=none",
        "required": False,
        "found": ["v=DMARC1; p=none"],
        "policy": "none",
    }
    # The 2048-bit key's record is longer than one TXT string and one plain UDP answer.
    assert any(name.endswith("._domainkey.shop.test") for name, _ in dns.queries)


def test_a_record_with_another_key_does_not_verify(acme, globex, dns):
    domain = domain_create(client=acme.client, domain="shop.test")
    other = domain_create(client=globex.client, domain="other.test")
    key = domain.dkim_keys.get()
    dns.txt(key.record_name, other.dkim_keys.get().record_value)
    checked = domain_verify(domain_id=domain.id)
    assert checked.state == "pending"
    assert "publishes a different key" in checked.checks[f"dkim:{key.selector}"]["detail"]


def test_dmarc_is_reported_but_not_required(acme, dns):
    domain = domain_create(client=acme.client, domain="shop.test")
    publish(dns, domain, purposes=("dkim",))
    checked = domain_verify(domain_id=domain.id)
    assert checked.state == "verified"
    assert checked.checks["dmarc"]["ok"] is False and not checked.checks["dmarc"]["required"]


def test_with_an_spf_include_configured_the_domain_needs_it_too(acme, dns, settings):
    settings.MAILHUB_SPF_INCLUDE = SPF_INCLUDE
    domain = domain_create(client=acme.client, domain="shop.test")
    publish(dns, domain, purposes=("dkim",))
    checked = domain_verify(domain_id=domain.id)
    assert checked.state == "pending" and checked.checks["spf"]["ok"] is False
    # One SPF record that includes another which includes ours: one level is followed.
    dns.txt("shop.test", "v=spf1 include:spf.esp.test -all", "some-site-verification=abc")
    dns.txt("spf.esp.test", f"v=spf1 ip4:192.0.2.0/24 include:{SPF_INCLUDE} -all")
    checked = domain_verify(domain_id=domain.id)
    assert checked.state == "verified"
    assert (
        checked.checks["spf"]["detail"]
        == f"the SPF record includes {SPF_INCLUDE} through spf.esp.test"
    )


def test_two_spf_records_are_no_spf_record(acme, dns, settings):
    settings.MAILHUB_SPF_INCLUDE = SPF_INCLUDE
    domain = domain_create(client=acme.client, domain="shop.test")
    publish(dns, domain, purposes=("dkim",))
    dns.txt("shop.test", f"v=spf1 include:{SPF_INCLUDE} ~all", "v=spf1 -all")
    checked = domain_verify(domain_id=domain.id)
    assert checked.state == "pending" and "2 SPF records" in checked.checks["spf"]["detail"]


def test_the_bounce_domains_mx_is_checked_and_advisory(acme, dns, settings):
    settings.MAILHUB_BOUNCE_DOMAIN = "bounces.mailhub.test"
    settings.MAILHUB_BOUNCE_MX_HOST = "in.mailhub.test"
    domain = domain_create(client=acme.client, domain="shop.test")
    publish(dns, domain)
    checked = domain_verify(domain_id=domain.id)
    assert checked.state == "verified" and checked.checks["bounce"]["ok"] is False
    dns.set("bounces.mailhub.test", "CNAME", ["mx-alias.mailhub.test"])
    dns.set("mx-alias.mailhub.test", "MX", ["10 in.mailhub.test"])
    assert domain_verify(domain_id=domain.id).checks["bounce"]["ok"] is True


def test_records_that_disappear_make_the_domain_fail_then_suspend_after_the_grace(acme, dns):
    domain = domain_create(client=acme.client, domain="shop.test")
    publish(dns, domain)
    domain_verify(domain_id=domain.id)
    dns.clear()
    failing = domain_verify(domain_id=domain.id)
    assert failing.state == "failing" and failing.failing_since is not None
    assert sender_domains_refused(client_id=acme.client.id, domains=["shop.test"]) == {}
    # The grace period (72 h by default) ends: the next check suspends it.
    SendingDomain.objects.filter(id=domain.id).update(
        failing_since=timezone.now() - timedelta(hours=72, seconds=1)
    )
    assert domain_verify(domain_id=domain.id).state == "suspended"
    refused = sender_domains_refused(client_id=acme.client.id, domains=["shop.test"])
    assert "suspended" in refused["shop.test"]
    # Published again: verified again.
    publish(dns, domain)
    back = domain_verify(domain_id=domain.id)
    assert (back.state, back.failing_since) == ("verified", None)


def test_a_dns_server_that_does_not_answer_changes_no_state(acme, dns, settings):
    domain = domain_create(client=acme.client, domain="shop.test")
    publish(dns, domain)
    domain_verify(domain_id=domain.id)
    settings.MAILHUB_DNS_RESOLVERS = [("127.0.0.1", 9)]  # nothing answers there
    settings.MAILHUB_DNS_TIMEOUT_SECONDS = 0.3
    checked = domain_verify(domain_id=domain.id)
    assert checked.state == "verified"
    assert checked.checks[f"dkim:{domain.dkim_keys.get().selector}"]["ok"] is None


def test_the_periodic_check_takes_due_domains_and_leaves_local_ones_alone(acme, dns, settings):
    due = domain_create(client=acme.client, domain="shop.test")
    recent = domain_create(client=acme.client, domain="recent.test")
    local = domain_create(client=acme.client, domain="local.test")
    SendingDomain.objects.filter(id=recent.id).update(last_checked_at=timezone.now())
    SendingDomain.objects.filter(id=local.id).update(verified_locally=True, state="verified")
    publish(dns, due)
    assert domains_reverify_due() == 1
    assert fresh(due).state == "verified"
    assert fresh(recent).checks == {} and fresh(local).last_checked_at is None


def test_a_key_rotation_publishes_then_activates_then_retires(acme, dns):
    domain = domain_create(client=acme.client, domain="shop.test")
    publish(dns, domain)
    domain_verify(domain_id=domain.id)
    old = domain.dkim_keys.get()
    new = dkim_key_rotate(domain_id=domain.id, algorithm="ed25519-sha256")
    assert new.state == "pending" and new.selector == old.selector + "b"
    with pytest.raises(MailhubError) as twice:
        dkim_key_rotate(domain_id=domain.id)
    assert twice.value.code == "rotation_in_progress"
    with pytest.raises(MailhubError) as early:
        dkim_key_activate(domain_id=domain.id, selector=new.selector)
    assert early.value.code == "dkim_record_not_found"
    publish(dns, domain)  # now with the pending key's record
    assert dkim_key_activate(domain_id=domain.id, selector=new.selector).state == "active"
    states = dict(DkimKey.objects.filter(domain=domain).values_list("selector", "state"))
    assert states == {old.selector: "retired", new.selector: "active"}
    names = [r.name for r in domain_records(domain=fresh(domain)) if r.purpose == "dkim"]
    assert names == [f"{new.selector}._domainkey.shop.test"]
    # The new key is the one whose record keeps the domain verified.
    dns.remove(f"{old.selector}._domainkey.shop.test")
    assert domain_verify(domain_id=domain.id).state == "verified"


def test_the_active_key_cannot_be_retired_and_a_pending_one_can(acme):
    domain = domain_create(client=acme.client, domain="shop.test")
    active = domain.dkim_keys.get()
    with pytest.raises(MailhubError) as refused:
        dkim_key_retire(domain_id=domain.id, selector=active.selector)
    assert refused.value.code == "dkim_key_active"
    pending = dkim_key_rotate(domain_id=domain.id)
    assert dkim_key_retire(domain_id=domain.id, selector=pending.selector).state == "retired"


def test_two_clients_adding_one_name_get_different_selectors(acme, globex):
    ours = domain_create(client=acme.client, domain="shared.test").dkim_keys.get()
    theirs = domain_create(client=globex.client, domain="shared.test").dkim_keys.get()
    assert ours.selector != theirs.selector  # each can publish its own key at its own name
