"""Signed delivery tokens (VERP addresses, unsubscribe links): only what this deployment made,
for this purpose, reads back; anything else reads as None and never raises."""

import pytest
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from deliveries.tokens import (
    BOUNCE,
    UNSUBSCRIBE,
    delivery_of_verp_address,
    delivery_token,
    read_delivery_token,
    verp_address,
)

ids = st.integers(min_value=1, max_value=2**63 - 1)


@given(ids)
def test_a_token_reads_back_as_its_delivery_for_its_purpose_only(delivery_id):
    token = delivery_token(BOUNCE, delivery_id)
    assert read_delivery_token(BOUNCE, token) == delivery_id
    assert read_delivery_token(UNSUBSCRIBE, token) is None


@given(ids)
def test_a_mail_system_that_changes_the_case_of_the_local_part_does_not_break_it(delivery_id):
    address = verp_address(delivery_id, bounce_domain="bounces.example.com")
    assert delivery_of_verp_address(address.upper(), bounce_domain="bounces.example.com") == (
        delivery_id
    )
    assert len(address.partition("@")[0]) <= 64  # RFC 5321's limit on a local part


@given(ids, ids)
def test_a_token_cannot_be_moved_to_another_delivery(delivery_id, other):
    mac = delivery_token(BOUNCE, delivery_id).partition(".")[2]
    forged = f"{delivery_token(BOUNCE, other).partition('.')[0]}.{mac}"
    assert read_delivery_token(BOUNCE, forged) == (other if other == delivery_id else None)


@given(st.text(max_size=200))
def test_anything_else_reads_as_none_and_never_raises(text):
    assert read_delivery_token(BOUNCE, text) is None
    assert delivery_of_verp_address(text, bounce_domain="bounces.example.com") is None
    assert (
        delivery_of_verp_address(f"bounce+{text}@bounces.example.com", bounce_domain="b.c") is None
    )


def test_a_token_on_another_domain_or_without_the_prefix_is_not_a_verp_address():
    token = delivery_token(BOUNCE, 42)
    assert (
        delivery_of_verp_address(
            f"bounce+{token}@bounces.example.com", bounce_domain="bounces.example.com"
        )
        == 42
    )
    assert (
        delivery_of_verp_address(
            f"<bounce+{token}@Bounces.Example.com.>", bounce_domain="bounces.example.com"
        )
        == 42
    )
    assert (
        delivery_of_verp_address(
            f"bounce+{token}@evil.example", bounce_domain="bounces.example.com"
        )
        is None
    )
    assert (
        delivery_of_verp_address(
            f"{token}@bounces.example.com", bounce_domain="bounces.example.com"
        )
        is None
    )
    assert delivery_of_verp_address(f"bounce+{token}@bounces.example.com", bounce_domain="") is None


def test_tokens_of_a_rotated_secret_still_read_and_others_do_not():
    with override_settings(SECRET_KEY="old-secret-" + "x" * 40):
        token = delivery_token(UNSUBSCRIBE, 7)
    with override_settings(
        SECRET_KEY="new-secret-" + "y" * 40, SECRET_KEY_FALLBACKS=["old-secret-" + "x" * 40]
    ):
        assert read_delivery_token(UNSUBSCRIBE, token) == 7
    with override_settings(SECRET_KEY="new-secret-" + "y" * 40, SECRET_KEY_FALLBACKS=[]):
        assert read_delivery_token(UNSUBSCRIBE, token) is None


@pytest.mark.parametrize("bad", [0, -1, 2**63])
def test_only_delivery_ids_get_tokens(bad):
    with pytest.raises(ValueError):
        delivery_token(BOUNCE, bad)
    with pytest.raises(ValueError):
        delivery_token("other", 1)
