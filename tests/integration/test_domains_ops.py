"""Operators' tools for sending domains: ``manage.py domains`` and the admin, which shows state,
checks and records and never a private key."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from domains.models import DkimKey, SendingDomain
from domains.selectors import domain_records
from domains.services import domain_create

pytestmark = pytest.mark.integration


def domains(*arguments: str) -> str:
    out = StringIO()
    call_command("domains", *arguments, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_add_prints_the_records_to_publish_and_list_shows_the_domain(acme):
    printed = domains("add", "acme", "Shop.Test")
    key = DkimKey.objects.get(domain__domain="shop.test")
    assert (
        f"{key.selector}._domainkey.shop.test.  TXT  v=DKIM1; k=rsa; p={key.public_key}" in printed
    )
    assert "_dmarc.shop.test.  TXT  v=DMARC1; p=none" in printed
    assert (
        f"acme\tshop.test\tpending\tchecked never\n\t\t{key.selector}\trsa-sha256\tactive"
        in domains("list")
    )


def test_adding_a_domain_twice_fails_unless_exist_ok_and_verified_locally_is_idempotent(db):
    for _ in range(2):  # what ./scripts/start runs at every start
        domains("add", "demo", "shop.test", "--verified-locally", "--exist-ok")
    domain = SendingDomain.objects.get(client__name="demo")
    assert (domain.state, domain.verified_locally) == ("verified", True)
    with pytest.raises(CommandError, match="already"):
        domains("add", "demo", "shop.test")


def test_verify_prints_each_check_and_fails_until_the_domain_is_verified(acme, dns):
    domains("add", "acme", "shop.test")
    with pytest.raises(CommandError, match=r"shop\.test is pending"):
        domains("verify", "acme", "shop.test")
    domain = SendingDomain.objects.get()
    for record in domain_records(domain=domain):
        if record.publisher == "client":
            dns.txt(record.name, record.value)
    printed = domains("verify", "acme", "shop.test")
    assert printed.startswith("shop.test: verified\n")
    assert "dmarc                ok       (advisory) DMARC policy p=none" in printed


def test_a_rotation_from_the_command_line(acme, dns):
    domain = domain_create(client=acme.client, domain="shop.test")
    old = domain.dkim_keys.get().selector
    printed = domains("rotate", "acme", "shop.test", "--algorithm", "ed25519-sha256")
    new = DkimKey.objects.get(state="pending")
    assert f"domains activate acme shop.test {new.selector}" in printed
    with pytest.raises(CommandError, match="Not activated: no DKIM key record"):
        domains("activate", "acme", "shop.test", new.selector)
    dns.txt(new.record_name, new.record_value)
    domains("activate", "acme", "shop.test", new.selector)
    assert dict(DkimKey.objects.values_list("selector", "state")) == {
        old: "retired",
        new.selector: "active",
    }
    with pytest.raises(CommandError, match="is the active key"):
        domains("retire", "acme", "shop.test", new.selector)


def test_reencrypt_puts_every_key_under_the_first_encryption_key(acme, settings):
    from cryptography.fernet import Fernet

    from domains import keys

    domain_create(client=acme.client, domain="shop.test")
    before = bytes(DkimKey.objects.get().private_key_encrypted)
    settings.MAILHUB_DKIM_ENCRYPTION_KEYS = [
        Fernet.generate_key().decode(),
        *settings.MAILHUB_DKIM_ENCRYPTION_KEYS,
    ]
    assert domains("reencrypt") == "1 private keys encrypted under the first key.\n"
    after = bytes(DkimKey.objects.get().private_key_encrypted)
    settings.MAILHUB_DKIM_ENCRYPTION_KEYS = settings.MAILHUB_DKIM_ENCRYPTION_KEYS[:1]
    assert keys.decrypt(after).startswith(b"-----BEGIN PRIVATE KEY-----") and after != before


def test_unknown_clients_domains_and_bad_names_are_errors(acme):
    with pytest.raises(CommandError, match="No client named 'nobody'"):
        domains("verify", "nobody", "shop.test")
    with pytest.raises(CommandError, match="has no sending domain"):
        domains("verify", "acme", "shop.test")
    with pytest.raises(CommandError, match="line break"):
        domains("add", "acme", "shop\n.test")


def test_the_admin_shows_state_checks_and_records_but_no_private_key(admin_client, acme, dns):
    domain = domain_create(client=acme.client, domain="shop.test")
    key = domain.dkim_keys.get()
    assert admin_client.get(reverse("admin:domains_sendingdomain_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:domains_dkimkey_changelist")).status_code == 200
    dns.txt(key.record_name, key.record_value)
    verify = admin_client.post(
        reverse("admin:domains_sendingdomain_changelist"),
        {"action": "verify_now", "_selected_action": [str(domain.id)]},
        follow=True,
    )
    assert [str(m) for m in verify.context["messages"]] == ["shop.test: verified"]
    pages = [
        admin_client.get(reverse("admin:domains_sendingdomain_change", args=[domain.id])),
        admin_client.get(reverse("admin:domains_dkimkey_change", args=[key.id])),
    ]
    for page in pages:
        html = page.content.decode()
        assert page.status_code == 200 and key.public_key in html
        assert "PRIVATE" not in html and bytes(key.private_key_encrypted).decode() not in html
    assert "the key is published at" in pages[0].content.decode()
    assert admin_client.get(reverse("admin:domains_sendingdomain_add")).status_code == 403


def test_metrics_count_sending_domains_by_state(client, acme):
    from domains.services import domain_mark_verified_locally

    domain_create(client=acme.client, domain="pending.test")
    domain_mark_verified_locally(domain_id=domain_create(client=acme.client, domain="ok.test").id)
    text = client.get("/metrics").content.decode()
    assert 'mailhub_sending_domains{state="pending"} 1.0' in text
    assert 'mailhub_sending_domains{state="verified"} 1.0' in text
    assert 'mailhub_sending_domains{state="suspended"} 0.0' in text
