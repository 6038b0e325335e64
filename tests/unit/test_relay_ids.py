"""The relay's message id read from its 250 reply to DATA (deliveries.relay_ids)."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deliveries.relay_ids import MAX_RELAY_ID, relay_message_id

SES_ID = "0100018c5ab7c1d2-6f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b-000000"
SAFE = re.compile(r"[A-Za-z0-9_.=+/@-]*")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Ok {SES_ID}", SES_ID),  # Amazon SES
        ("Ok: queued as nhIMmON9SFOPcT0ii4nt2A", "nhIMmON9SFOPcT0ii4nt2A"),  # SendGrid
        ("2.0.0 Ok: queued as 4Xyz1abcDEf", "4Xyz1abcDEf"),  # Postfix
        ("2.0.0 OK: queued as em_4yM2nTvR8oPcX3uZiKeLg7sB", "em_4yM2nTvR8oPcX3uZiKeLg7sB"),
        ("OK queued as 3e1f2a9c-7b", "3e1f2a9c-7b"),  # Mailjet
        ("Message queued as 18c5ab7c1d2000a1", "18c5ab7c1d2000a1"),  # ZoneMTA
        ("OK id=1qAbCd-000123-Ef", "1qAbCd-000123-Ef"),  # Exim
        ("Message Queued (A1B2C3D4.1)", "A1B2C3D4.1"),  # Haraka
        ("Ok: queued as ABC123.", "ABC123"),  # a full stop ends the sentence, not the id
        ("2.0.0 Ok: queued as <ABC123>", "ABC123"),
        ("Ok: queued as ABC123\nsecond line", "ABC123"),
        ("Ok: queued as ABC\u2028DEF", "ABC"),  # any line break ends it
    ],
)
def test_each_relays_reply_gives_its_id(text, expected):
    assert relay_message_id(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Great success",  # Mailgun gives none
        "2.0.0 OK: queued",
        "2.0.0 OK  1701234567 a1-20020a05600c4f4100b0040b2c195523si123456wmq.123 - gsmtp",
        "OK Accepted",
        "Ok",
        "",
        "Ok: queued as ",
        "Ok: queued as ABC\x00DEF",  # a character outside the id's set: not an id of ours
        "Ok: queued as " + "A" * (MAX_RELAY_ID + 1),  # too long: kept whole or not at all
        "Ok: queued as \u00e9t\u00e9",
    ],
)
def test_replies_that_name_no_message_give_nothing(text):
    assert relay_message_id(text) == ""


def test_the_longest_id_kept_fits_the_column():
    assert relay_message_id("Ok: queued as " + "A" * MAX_RELAY_ID) == "A" * MAX_RELAY_ID


def test_anything_not_text_gives_nothing():
    assert relay_message_id(None) == ""


@given(st.text(max_size=2000))
def test_any_text_gives_a_bounded_safe_id_and_never_raises(text):
    relay_id = relay_message_id(text)
    assert len(relay_id) <= MAX_RELAY_ID
    assert SAFE.fullmatch(relay_id)


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_=+/@-]{0,100}[A-Za-z0-9]", fullmatch=True))
def test_an_id_written_in_the_postfix_form_reads_back(relay_id):
    assert relay_message_id(f"2.0.0 Ok: queued as {relay_id}") == relay_id


@given(st.text(max_size=300), st.text(max_size=300))
def test_the_text_after_an_id_never_changes_it_into_another(relay_id_tail, rest):
    text = f"Ok: queued as ABC{relay_id_tail} {rest}"
    relay_id = relay_message_id(text)
    assert relay_id == "" or relay_id.startswith("ABC")
