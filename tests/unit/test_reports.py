"""The report parser (api/reports.py) over real-world formats kept in tests/data/bounces/, and
which deliveries a report may touch (api/bounces.report_deliveries): only those a verified VERP
token names. Property tests mutate, cut and re-encode the samples: the parser never raises,
returns clean one-line strings and well-formed status codes, and a forged token names nothing."""

from __future__ import annotations

import base64
import logging
import re
from dataclasses import astuple, fields
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api.bounces import report_deliveries
from api.reports import (
    DELAYED,
    FAILED,
    MAX_REPORT_BYTES,
    DeliveryReport,
    FeedbackReport,
    OriginalMessage,
    RecipientStatus,
    clean_text,
    parse_reports,
)
from deliveries.tokens import delivery_token

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "bounces"
BOUNCE_DOMAIN = "bounces.example.com"
PLACEHOLDER = b"VERPTOKEN"
DELIVERY_ID = 4242
STATUS = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\x80-\x9f\u2028\u2029\ud800-\udfff]")


def sample(name: str, *, delivery_id: int = DELIVERY_ID) -> bytes:
    """A sample with a real VERP token for ``delivery_id`` where it says VERPTOKEN."""
    token = delivery_token("bounce", delivery_id).encode()
    return (SAMPLES / f"{name}.eml").read_bytes().replace(PLACEHOLDER, token)


def verp(delivery_id: int = DELIVERY_ID) -> str:
    return f"bounce+{delivery_token('bounce', delivery_id)}@{BOUNCE_DOMAIN}"


NAMES = sorted(path.stem for path in SAMPLES.glob("*.eml"))

#: sample -> (format, recipient, action, status, smtp code): a bounce's one recipient.
BOUNCES = {
    "postfix_user_unknown": ("dsn", "ann@example.com", FAILED, "5.1.1", 550),
    "postfix_delayed": ("dsn", "ann@example.com", DELAYED, "4.4.1", None),
    "exchange_o365": ("dsn", "ann@contoso.example", FAILED, "5.1.10", 550),
    "gmail_dsn": ("dsn", "ann@gmail.com", FAILED, "5.1.1", 550),
    "yahoo_dsn": ("dsn", "ann@yahoo.com", FAILED, "5.0.0", 554),
    "exim_plain": ("heuristic", "ann@example.org", FAILED, "5.1.1", 550),
    "qmail_plain": ("heuristic", "ann@example.net", FAILED, "5.1.1", 550),
    "exchange_2000_plain": ("heuristic", "ann@corp.example.com", FAILED, "5.0.0", None),
    "gmail_plain_legacy": ("heuristic", "ann@example.info", FAILED, "5.1.1", 550),
    "yahoo_plain_legacy": ("heuristic", "ann@yahoo.com", FAILED, "5.0.0", 554),
}
#: sample -> (user agent, Original-Rcpt-To)
COMPLAINTS = {
    "arf_yahoo": ("Yahoo!-Mail-Feedback/2.0", ("ann@yahoo.com",)),
    "arf_aol": ("AOL SComp", ()),
    "arf_microsoft": ("Hotmail FBL", ("ann@outlook.com",)),
}
NOT_REPORTS = ["autoreply_out_of_office"]


def test_every_sample_has_an_expectation():
    assert sorted([*BOUNCES, *COMPLAINTS, *NOT_REPORTS, "malformed"]) == NAMES


@pytest.mark.parametrize("name", sorted(BOUNCES))
def test_a_bounce_names_its_recipient_action_status_and_reply(name):
    form, address, action, status, code = BOUNCES[name]

    [report] = parse_reports(sample(name))

    assert isinstance(report, DeliveryReport) and report.format == form
    [recipient] = report.recipients
    assert recipient.final_recipient == address
    assert (recipient.action, recipient.status, recipient.smtp_code) == (action, status, code)
    assert recipient.hard is (action == FAILED)
    assert recipient.is_about(address.upper()) and not recipient.is_about("bob@example.com")
    assert recipient.diagnostic  # the server's words, for the event and the suppression


def test_a_dsn_reads_the_quoted_original_and_the_reporting_server():
    [report] = parse_reports(sample("postfix_user_unknown"))

    assert isinstance(report, DeliveryReport)
    assert report.reporting_mta == "relay.example.net"
    assert report.original == OriginalMessage(
        return_path=verp(),
        message_id="<0b6f0d1e-5a7c-4e43-9d55-1c1f3a0e9b2a@mailhub.shop.example>",
        sender="Shop <no-reply@shop.test>",
        recipient="ann@example.com",
    )
    [recipient] = report.recipients
    assert recipient.original_recipient == "ann@example.com"
    assert recipient.remote_mta == "mx.example.com"
    assert recipient.diagnostic == (
        "smtp; 550 5.1.1 <ann@example.com>: Recipient address rejected: User unknown in local "
        "recipient table"
    )  # the folded field, unfolded


@pytest.mark.parametrize("name", sorted(COMPLAINTS))
def test_a_complaint_names_its_type_agent_and_the_quoted_envelope_sender(name):
    agent, rcpt_to = COMPLAINTS[name]

    [report] = parse_reports(sample(name))

    assert isinstance(report, FeedbackReport)
    assert (report.feedback_type, report.complaint) == ("abuse", True)
    assert report.user_agent == agent
    assert report.original_rcpt_to == rcpt_to
    assert report.arrival_date.startswith("Tue, 1 Dec 2026")
    assert report.original is not None and report.original.return_path == verp()


def test_an_auto_reply_is_no_report_whatever_it_says():
    assert parse_reports(sample("autoreply_out_of_office")) == []


def test_a_malformed_report_is_read_as_far_as_it_goes_and_bounces_no_one():
    reports = parse_reports(sample("malformed"))

    statuses = [s for r in reports if isinstance(r, DeliveryReport) for s in r.recipients]
    assert not [s for s in statuses if s.hard]


def test_a_report_larger_than_the_limit_is_not_read():
    data = sample("postfix_user_unknown")
    assert parse_reports(data, max_bytes=len(data) - 1) == []
    assert parse_reports(data + b"\n" * (MAX_REPORT_BYTES - len(data) + 1)) == []


def test_absurd_nesting_yields_nothing_and_does_not_raise():
    depth = 3000
    head = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (n, n) for n in range(depth)
    )
    data = head + b"Content-Type: message/delivery-status\n\nAction: failed\n"
    assert isinstance(parse_reports(data), list)


def test_only_feedback_that_says_unwanted_is_a_complaint():
    data = sample("arf_microsoft")
    for kind, complaint in [
        ("abuse", True),
        ("fraud", True),
        ("not-spam", False),
        ("other", False),
    ]:
        [report] = parse_reports(
            data.replace(b"Feedback-Type: abuse", b"Feedback-Type: " + kind.encode())
        )
        assert isinstance(report, FeedbackReport) and report.complaint is complaint


# -- which deliveries a report may touch --------------------------------------------------


def test_a_bounce_names_the_delivery_of_the_verp_address_it_was_sent_to_and_nothing_else():
    [report] = parse_reports(sample("postfix_user_unknown"))

    assert report_deliveries(report, rcpt=verp(), bounce_domain=BOUNCE_DOMAIN) == {DELIVERY_ID}
    # The quoted Return-Path does not count for a bounce: only the address it was sent to.
    assert (
        report_deliveries(report, rcpt=f"postmaster@{BOUNCE_DOMAIN}", bounce_domain=BOUNCE_DOMAIN)
        == set()
    )
    assert report_deliveries(report, rcpt=verp(), bounce_domain="other.example.com") == set()


@pytest.mark.parametrize("name", sorted(COMPLAINTS))
def test_a_complaint_names_the_delivery_of_the_quoted_envelope_sender(name):
    [report] = parse_reports(sample(name))

    assert report_deliveries(report, rcpt=f"fbl@{BOUNCE_DOMAIN}", bounce_domain=BOUNCE_DOMAIN) == {
        DELIVERY_ID
    }


tokens = st.one_of(
    st.text(min_size=0, max_size=40),
    st.from_regex(r"[0-9a-z]{1,13}\.[a-z2-7]{16}", fullmatch=True),
    st.integers(min_value=1, max_value=2**40).map(
        lambda n: delivery_token("bounce", n)[:-1] + "a"  # a real token, its MAC changed
    ),
)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(NAMES), token=tokens)
def test_a_forged_token_never_names_a_delivery(name, token):
    forged = (
        (SAMPLES / f"{name}.eml")
        .read_bytes()
        .replace(PLACEHOLDER, token.encode("utf-8", "surrogatepass"))
    )
    rcpt = f"bounce+{token}@{BOUNCE_DOMAIN}"
    for report in parse_reports(forged):
        named = report_deliveries(report, rcpt=rcpt, bounce_domain=BOUNCE_DOMAIN)
        assert named == set() or {delivery_token("bounce", n) for n in named} == {token.lower()}


# -- hostile bytes ------------------------------------------------------------------------


def assert_well_formed(reports: list) -> None:
    for report in reports:
        assert isinstance(report, DeliveryReport | FeedbackReport)
        values = list(astuple(report))
        if isinstance(report, DeliveryReport):
            for recipient in report.recipients:
                assert isinstance(recipient, RecipientStatus)
                assert recipient.status == "" or STATUS.fullmatch(recipient.status)
                assert recipient.action in (
                    "",
                    "failed",
                    "delayed",
                    "delivered",
                    "relayed",
                    "expanded",
                )
                assert recipient.smtp_code is None or 200 <= recipient.smtp_code < 600
        for value in _strings(values):
            assert isinstance(value, str) and len(value) <= 1000
            assert not UNPRINTABLE.search(value), value
            assert value == value.strip()


def _strings(values):
    for value in values:
        if isinstance(value, tuple | list):
            yield from _strings(value)
        elif isinstance(value, bool) or value is None:
            continue
        else:
            yield value


def mutate(data: bytes, edits: list[tuple[int, bytes]], cut: int | None) -> bytes:
    buffer = bytearray(data)
    for position, replacement in edits:
        at = position % (len(buffer) + 1)
        buffer[at : at + len(replacement)] = replacement
    return bytes(buffer[:cut] if cut is not None else buffer)


hostile_bytes = st.one_of(
    st.binary(min_size=1, max_size=8),
    st.sampled_from(
        [b"\x00", b"\r", b"\n\n", b"\xe2\x80\xa8", b"\xff\xfe", b"--", b"=?utf-8?b?AA==?=",
         b"\nContent-Type: multipart/report; boundary=x\n", b"Action: failed\nStatus: 5.1.1\n",
         b"Final-Recipient: rfc822; ann@example.com\n", b"\xed\xa0\x80"]
    ),
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(NAMES),
    edits=st.lists(
        st.tuples(st.integers(min_value=0, max_value=10_000), hostile_bytes), max_size=6
    ),
    cut=st.one_of(st.none(), st.integers(min_value=0, max_value=10_000)),
)
# Found with random seeds: a NUL in the charset of a plain-text bounce (decoding in it raised
# ValueError); a diagnostic cut at MAX_TEXT right after a space (it ended in that space).
@example(name="gmail_plain_legacy", edits=[(320, b"\x00")], cut=None)
@example(
    name="exim_plain",
    edits=[
        (
            54,
            b"\nContent-Transfer-Encoding: base64\n\nContent-Transfer-Encoding: quoted-printable"
            b"\n\nContent-Type: message/rfc822\n",
        ),
        (4951, b"--"),
        (886, b"--"),
        (457, b"\nContent-Type: message/feedback-report\n"),
        (303, b"begin 644 x\n"),
    ],
    cut=1126,
)
def test_mutated_and_truncated_samples_never_raise_and_give_clean_strings(name, edits, cut):
    failures = Recorder()
    logger = logging.getLogger("api.reports")
    logger.addHandler(failures)
    try:
        reports = parse_reports(mutate(sample(name), edits, cut))
    finally:
        logger.removeHandler(failures)
    assert_well_formed(reports)
    assert not failures.records, "the parser failed inside and dropped the message"


@pytest.mark.parametrize(
    "param",
    [
        b"charset=ISO-8859-1\x00",  # a NUL: ValueError from decode()
        b"charset*=us-ascii''ISO%00-8859-1",  # the same in RFC 2231's form
        b"charset*=x%00''ISO-8859-1",  # in RFC 2231's own charset: get_content_charset() raises
        b"charset=idna",  # a codec that takes no "replace": UnicodeError
        b"charset=base64",  # bytes to bytes, no text encoding: LookupError
        b"charset=no-such-charset",  # LookupError
    ],
)
def test_a_plain_text_bounce_in_a_charset_that_decodes_no_text_is_read_as_utf8(param, caplog):
    data = sample("gmail_plain_legacy")
    named = data.replace(b"charset=ISO-8859-1", param)
    assert named != data

    with caplog.at_level(logging.WARNING, logger="api.reports"):
        reports = parse_reports(named)

    assert reports == parse_reports(data) != []
    assert not caplog.records


def test_clean_text_cut_at_its_limit_does_not_end_in_a_space():
    assert clean_text("word " * 300, 1000) == " ".join(["word"] * 200)
    assert clean_text("a  b", 2) == "a"


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=4000))
def test_arbitrary_bytes_never_raise(data):
    assert_well_formed(parse_reports(data))


@pytest.mark.parametrize("name", NAMES)
def test_crlf_line_ends_read_as_lf_ones(name):
    data = sample(name)
    assert parse_reports(data.replace(b"\n", b"\r\n")) == parse_reports(data)


@pytest.mark.parametrize("name", [n for n in sorted(BOUNCES) if BOUNCES[n][0] == "dsn"])
def test_a_base64_encoded_status_part_reads_as_the_plain_one(name):
    data = sample(name)
    head, _, rest = data.partition(b"Content-Type: message/delivery-status\n\n")
    body, boundary, tail = rest.partition(b"\n--")
    encoded = base64.encodebytes(body + b"\n")
    reencoded = (
        head
        + b"Content-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n"
        + encoded
        + boundary
        + tail
    )
    [plain] = parse_reports(data)
    [decoded] = parse_reports(reencoded)
    assert isinstance(plain, DeliveryReport) and isinstance(decoded, DeliveryReport)
    assert decoded.recipients == plain.recipients


def test_every_field_of_a_report_is_covered_by_the_cleanliness_check():
    # assert_well_formed walks astuple(); a field that is neither str, tuple, bool nor None
    # would slip through it.
    for kind in (DeliveryReport, FeedbackReport, RecipientStatus, OriginalMessage):
        assert {f.type for f in fields(kind)} <= {
            "str",
            "tuple[str, ...]",
            "tuple[RecipientStatus, ...]",
            "OriginalMessage | None",
        }


def test_a_global_dsn_reads_its_utf8_fields():
    # RFC 6533: the status part of a report about an internationalized address is UTF-8.
    data = (
        sample("postfix_user_unknown")
        .replace(b"message/delivery-status", b"message/global-delivery-status")
        .replace(
            b"Diagnostic-Code: smtp; 550 5.1.1", "Diagnostic-Code: smtp; 550 5.1.1 café".encode()
        )
    )

    [report] = parse_reports(data)

    assert isinstance(report, DeliveryReport)
    [recipient] = report.recipients
    assert recipient.hard and recipient.diagnostic.startswith("smtp; 550 5.1.1 café")


def test_a_plain_text_bounce_that_gave_up_after_temporary_failures_is_no_hard_bounce():
    gave_up = sample("exim_plain").replace(
        b"550 5.1.1 <ann@example.org>: Recipient address rejected: User unknown",
        b"451 4.7.1 <ann@example.org>: Greylisted, retry timeout exceeded",
    )

    [report] = parse_reports(gave_up)

    assert isinstance(report, DeliveryReport)
    [recipient] = report.recipients
    assert (recipient.action, recipient.status, recipient.hard) == (FAILED, "4.7.1", False)


def test_a_dsn_without_its_per_message_block_still_names_its_recipient():
    data = sample("postfix_user_unknown")
    without = re.sub(rb"Reporting-MTA: dns; relay.example.net\n(.+\n)+?\n", b"", data, count=1)
    assert b"Reporting-MTA" not in without

    [report] = parse_reports(without)

    assert isinstance(report, DeliveryReport)
    [recipient] = report.recipients
    assert recipient.final_recipient == "ann@example.com" and recipient.hard
