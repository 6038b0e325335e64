"""Sending domain names: one stored form, and every hostile spelling refused with a clear 400."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from domains.names import DomainNameInvalid, domain_normalise
from mailhub.env import parse_domain_name, parse_nameservers

#: What a stored name always is: lower-case letters, digits and hyphens in dot-separated labels.
STORED = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
LINE_BREAKS = ["\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("shop.example", "shop.example"),
        ("  Shop.EXAMPLE.  ", "shop.example"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
        ("mail.eu.shop.example", "mail.eu.shop.example"),
        ("localhost", "localhost"),
        ("a" * 63 + ".example", "a" * 63 + ".example"),
    ],
)
def test_a_domain_is_stored_lower_case_as_its_a_label(typed, stored):
    assert domain_normalise(typed) == stored


@pytest.mark.parametrize(
    ("typed", "why"),
    [
        ("", "Give a domain name"),
        ("   ", "Give a domain name"),
        ("*.shop.example", "wildcard"),
        ("192.0.2.1", "IP address"),
        ("[2001:db8::1]", "IP address"),
        ("2001:db8::1", "IP address"),
        (
            "\uff11\uff19\uff12.\uff10.\uff12.\uff11",
            "IP address",
        ),  # full-width digits: IDNA maps them
        ("ann@shop.example", "without the part before the @"),
        ("a" * 64 + ".example", "63"),
        (("a" * 60 + ".") * 5 + "example", "253"),
        ("shop..example", "not a valid domain"),
        ("-shop.example", "not a valid domain"),
        ("shop_mail.example", "not a valid domain"),
        ("shop example", "not a valid domain"),
        ("xn--zz.example", "not a valid domain"),  # not punycode
        ("shop.example\x00", "control"),
        ("shop\u200b.example", "control"),  # zero-width space: invisible
        ("shop\ud800.example", "surrogate"),
        ("x" * 5000, "253"),
        *((f"shop{brk}.example", "line break") for brk in LINE_BREAKS),
    ],
)
def test_a_hostile_or_malformed_name_is_refused_saying_why(typed, why):
    with pytest.raises(DomainNameInvalid) as refused:
        domain_normalise(typed)
    assert why in refused.value.message
    assert refused.value.code == "invalid_domain" and refused.value.status == 400


@given(st.text(max_size=300))
@example("bücher.example")
@example("Ⅻ.example")
def test_any_text_is_stored_in_the_one_form_or_refused_with_a_400(text):
    try:
        stored = domain_normalise(text)
    except DomainNameInvalid as refused:
        assert refused.status == 400 and refused.message
        assert not any(c in refused.message for c in [*LINE_BREAKS, "\x00"])
        return
    assert STORED.fullmatch(stored), stored
    assert domain_normalise(stored) == stored  # idempotent: what is stored is accepted as is


@given(
    st.text(min_size=1, max_size=20),
    st.sampled_from([*LINE_BREAKS, "\x00", "\x07", "\x7f", "\ud800", "\udfff", "\u2066"]),
    st.text(max_size=20),
)
def test_a_name_holding_a_line_break_control_or_surrogate_is_always_refused(head, bad, tail):
    with pytest.raises(DomainNameInvalid):
        domain_normalise(head + bad + tail)


# -- the operator's settings -----------------------------------------------------------------------


def test_the_dns_servers_setting_takes_addresses_with_or_without_ports():
    assert parse_nameservers("V", "127.0.0.1:5353, 192.0.2.53,[::1]:53") == [
        ("127.0.0.1", 5353),
        ("192.0.2.53", 53),
        ("::1", 53),
    ]
    assert parse_nameservers("V", "") == []


@pytest.mark.parametrize("bad", ["dns.example", "127.0.0.1:x", "127.0.0.1:70000"])
def test_a_dns_server_must_be_an_ip_address_and_port(bad):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="V"):
        parse_nameservers("V", bad)


def test_an_operators_domain_setting_is_lower_cased_and_checked():
    from django.core.exceptions import ImproperlyConfigured

    assert (
        parse_domain_name("V", " _SPF.Mailhub.Example. ".replace("_", "")) == "spf.mailhub.example"
    )
    assert parse_domain_name("V", "") == ""
    with pytest.raises(ImproperlyConfigured, match="V must be a domain name"):
        parse_domain_name("V", "not a domain")
