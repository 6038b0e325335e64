"""Which key signs a message (``domains.signing.signers_for``): the active key of the client's
own domain of the From address, or of a parent domain that allows subdomains, while the domain
is usable; all of a task's keys in one query."""

from __future__ import annotations

import pytest

from domains import keys
from domains.models import DkimKey, SendingDomain
from domains.signing import signers_for
from tests.integration.dkim_rows import signing_domain

pytestmark = pytest.mark.integration


def test_each_from_domain_gets_the_key_of_its_own_or_its_parent_domain_in_one_query(
    acme, globex, django_assert_num_queries
):
    a = acme.client.id
    shop = signing_domain(acme.client, "shop.test", allow_subdomains=True)
    strict = signing_domain(acme.client, "strict.test", algorithm=keys.ED25519_SHA256)
    signing_domain(globex.client, "globex.test")
    signing_domain(acme.client, "pending.test", state=SendingDomain.State.PENDING)
    signing_domain(acme.client, "suspended.test", state=SendingDomain.State.SUSPENDED)
    failing = signing_domain(acme.client, "failing.test", state=SendingDomain.State.FAILING)
    retired = signing_domain(acme.client, "retired.test")
    retired.state = DkimKey.State.RETIRED
    retired.save()
    wanted = [
        (a, "shop.test"),
        (a, "news.shop.test"),
        (a, "strict.test"),
        (a, "news.strict.test"),  # strict.test does not allow subdomains
        (a, "globex.test"),  # another client's domain
        (a, "pending.test"),
        (a, "suspended.test"),
        (a, "failing.test"),  # in its grace period: still signs
        (a, "retired.test"),
        (a, "unknown.test"),
    ]

    with django_assert_num_queries(1):
        signers = signers_for(wanted)

    assert {key: (s.key_id, s.domain) for key, s in signers.items()} == {
        (a, "shop.test"): (shop.id, "shop.test"),
        (a, "news.shop.test"): (shop.id, "shop.test"),
        (a, "strict.test"): (strict.id, "strict.test"),
        (a, "failing.test"): (failing.id, "failing.test"),
    }
    assert signers[(a, "strict.test")].algorithm == keys.ED25519_SHA256


def test_a_key_that_cannot_be_decrypted_leaves_its_mail_unsigned(acme, settings, caplog):
    key = signing_domain(acme.client, "lost-key.test")
    settings.MAILHUB_DKIM_ENCRYPTION_KEYS = ["bm90LXRoZS1rZXktdGhhdC1lbmNyeXB0ZWQtaXQhISE="]

    assert signers_for([(acme.client.id, "lost-key.test")]) == {}
    assert f"DKIM key {key.id} of lost-key.test cannot be used" in caplog.text
