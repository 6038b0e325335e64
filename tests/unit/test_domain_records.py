"""What a sending domain must publish, and where a check's outcome takes its state: pure logic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domains.records import KeyRecord, records_to_publish
from domains.services import domain_next_state

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
ACTIVE = KeyRecord("mh202612", "rsa-sha256", "MIIBIjANBgkq", "active")
PENDING = KeyRecord(
    "mh202612b", "ed25519-sha256", "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "pending"
)
RETIRED = KeyRecord("mh202611", "rsa-sha256", "MIIold", "retired")


def records(**overrides):
    arguments = {
        "domain": "shop.example",
        "keys": [ACTIVE],
        "spf_include": "",
        "bounce_domain": "",
        "bounce_mx_host": "",
        **overrides,
    }
    return {(r.purpose, r.name): r for r in records_to_publish(**arguments)}


def test_the_active_key_is_a_required_txt_record_under_its_selector():
    dkim = records()[("dkim", "mh202612._domainkey.shop.example")]
    assert (dkim.type, dkim.value, dkim.required, dkim.publisher) == (
        "TXT",
        "v=DKIM1; k=rsa; p=MIIBIjANBgkq",
        True,
        "client",
    )


def test_a_pending_key_is_listed_to_publish_but_not_required_and_a_retired_one_not_at_all():
    found = records(keys=[RETIRED, ACTIVE, PENDING])
    pending = found[("dkim", "mh202612b._domainkey.shop.example")]
    assert pending.value.startswith("v=DKIM1; k=ed25519; p=11qY") and not pending.required
    assert ("dkim", "mh202611._domainkey.shop.example") not in found


def test_spf_is_required_only_when_the_operator_names_an_include():
    assert ("spf", "shop.example") not in records()
    spf = records(spf_include="_spf.mailhub.example")[("spf", "shop.example")]
    assert spf.value == "v=spf1 include:_spf.mailhub.example ~all" and spf.required


def test_dmarc_is_suggested_and_advisory():
    dmarc = records()[("dmarc", "_dmarc.shop.example")]
    assert dmarc.value == "v=DMARC1; p=none" and not dmarc.required


def test_the_bounce_domains_mx_is_the_operators_record_and_advisory():
    assert not [key for key in records() if key[0] == "bounce"]
    bounce = records(bounce_domain="bounces.mailhub.example", bounce_mx_host="in.mailhub.example")[
        ("bounce", "bounces.mailhub.example")
    ]
    assert (bounce.type, bounce.value, bounce.required, bounce.publisher) == (
        "MX",
        "10 in.mailhub.example",
        False,
        "operator",
    )


def test_required_records_come_first():
    listed = records_to_publish(
        domain="shop.example",
        keys=[PENDING, ACTIVE],
        spf_include="_spf.mailhub.example",
        bounce_domain="bounces.mailhub.example",
        bounce_mx_host="",
    )
    flags = [record.required for record in listed]
    assert flags == sorted(flags, reverse=True) and flags[0]


@given(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){1,3}", fullmatch=True))
def test_every_record_is_one_line_of_printable_ascii(domain):
    for record in records_to_publish(
        domain=domain,
        keys=[ACTIVE, PENDING],
        spf_include="_spf.mailhub.example",
        bounce_domain="bounces.mailhub.example",
        bounce_mx_host="in.mailhub.example",
    ):
        for text in (record.name, record.value):
            assert text.isascii() and text.isprintable(), text
        assert (
            record.name == domain
            or record.name.endswith("." + domain)
            or record.purpose == "bounce"
        )


# -- the domain's state after a check -------------------------------------------------------------

GRACE = timedelta(hours=72)  # tests/settings leaves MAILHUB_DOMAIN_GRACE_SECONDS at its default


def step(state, outcome, *, failing_since=None, verified_at=None, now=NOW):
    return domain_next_state(
        state=state, outcome=outcome, failing_since=failing_since, verified_at=verified_at, now=now
    )


@pytest.mark.parametrize("state", ["pending", "verified", "failing", "suspended"])
def test_found_records_verify_the_domain_from_any_state(state):
    after = step(state, True, failing_since=NOW - timedelta(days=9))
    assert (after.state, after.failing_since) == ("verified", None)
    assert after.verified_at == NOW


def test_a_domain_verified_before_keeps_the_time_it_was_first_verified():
    first = NOW - timedelta(days=30)
    assert step("verified", True, verified_at=first).verified_at == first


def test_missing_records_leave_a_pending_domain_pending():
    assert step("pending", False).state == "pending"


def test_a_verified_domain_whose_records_disappear_is_failing_from_now():
    after = step("verified", False)
    assert (after.state, after.failing_since) == ("failing", NOW)


def test_a_failing_domain_is_suspended_once_the_grace_period_is_over():
    since = NOW - GRACE
    assert step("failing", False, failing_since=since + timedelta(seconds=1)).state == "failing"
    assert step("failing", False, failing_since=since).state == "suspended"
    # No answer from DNS is no evidence either way, but the grace period still ends.
    assert step("failing", None, failing_since=since).state == "suspended"


@pytest.mark.parametrize("state", ["pending", "verified", "suspended"])
def test_a_check_dns_could_not_answer_changes_nothing(state):
    assert step(state, None).state == state
