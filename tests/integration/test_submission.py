"""SMTP submission: the `submission` process (manage.py submission_smtp, as the Procfile runs
it) with a self-signed certificate, the real workers and the SMTP sink. Messages go in with
smtplib over STARTTLS and an API key; each refusal gets its SMTP reply and stores nothing."""

from __future__ import annotations

import base64
import os
import re
import smtplib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from accounts.rate_limit import api_key_rate_check
from accounts.services import api_key_revoke, api_key_set_rate_limit
from api.submission import SubmissionController, submission_config
from benchmarks.load import Mail
from benchmarks.submission import smtp_submit
from deliveries.models import Delivery, Message
from deliveries.states import MessageStatus
from tests.builders import make_actor, message_payload
from tests.integration.conftest import wait_until_final, worker_env, worker_log_dir
from tests.integration.test_api_input import assert_nothing_stored
from tests.support.sink import SmtpSink, free_port
from tests.support.submission import SubmissionProcess, self_signed_certificate
from tests.support.workers import ROOT

# Committed data: the submission process and the workers read it from their own connections.
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SIZE_LIMIT = 64 * 1024
MAX_RECIPIENTS = 3
CONNECTIONS_PER_KEY = 2
QUEUED = re.compile(rb"^2\.0\.0 OK queued as ([0-9a-f-]{36})$")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture(scope="module")
def submission(mail_stack: SmtpSink, tmp_path_factory) -> Iterator[SubmissionProcess]:
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("submission"))
    env = worker_env(
        mail_stack,
        MAILHUB_SUBMISSION_MAX_MESSAGE_BYTES=str(SIZE_LIMIT),
        MAILHUB_SUBMISSION_MAX_CONNECTIONS_PER_KEY=str(CONNECTIONS_PER_KEY),
        MAILHUB_MAX_RECIPIENTS=str(MAX_RECIPIENTS),
    )
    server = SubmissionProcess("tests", env=env, log_dir=worker_log_dir(), cert=cert, key=key)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def mail(**headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Shop <no-reply@shop.test>"
    message["To"] = "Ann <ann@example.com>"
    message["Subject"] = "Your code"
    for name, value in headers.items():
        name = name.replace("_", "-")
        if name in ("From", "To", "Subject"):
            del message[name]
        message[name] = value
    message.set_content("Your code is 123456.")
    return message


def raw(*headers: bytes, body: bytes = b"Your code is 123456.\r\n") -> bytes:
    """A message written byte by byte, for what EmailMessage would not write."""
    top = b"From: Shop <no-reply@shop.test>\r\nTo: ann@example.com\r\n"
    return top + b"".join(header + b"\r\n" for header in headers) + b"\r\n" + body


def submit(
    smtp: smtplib.SMTP, content: bytes, recipients: list[str] | None = None
) -> tuple[int, bytes]:
    """One transaction, step by step: the first reply that is not a success, or DATA's."""
    for reply in [smtp.mail("bounce@shop.test")] + [
        smtp.rcpt(address) for address in recipients or ["ann@example.com"]
    ]:
        if reply[0] >= 400:
            smtp.rset()
            return reply
    return smtp.data(content)


def queued_id(reply: tuple[int, bytes]) -> uuid.UUID:
    code, text = reply
    found = QUEUED.match(text)
    assert code == 250 and found, reply
    return uuid.UUID(found.group(1).decode())


# -- accepted, delivered --------------------------------------------------------------------


def test_a_message_submitted_over_starttls_is_delivered_with_its_priority_and_tags(
    sink, submission, acme
):
    email = mail(
        Cc="Bob <bob@example.com>",
        X_Mailhub_Priority="HIGH",
        X_Mailhub_Tags="signup, code",
        X_Mailhub_Metadata='{"user": "42"}',
        X_Invoice="7",
        Message_ID="<client-chosen@shop.test>",
    )
    email.add_alternative('<p>Your code <img src="cid:logo@shop.test"></p>', subtype="html")
    email.get_payload()[1].add_related(PNG, "image", "png", cid="<logo@shop.test>")
    email.add_attachment(b"%PDF-1.4 ...", "application", "pdf", filename="terms.pdf")

    with submission.connect() as smtp:
        assert smtp.login("any user name", acme.key)[0] == 235
        reply = submit(
            smtp,
            email.as_bytes(policy=SMTP),
            ["ann@example.com", "bob@example.com", "carl@example.com"],
        )

    message = Message.objects.get(id=queued_id(reply))  # committed before the 250
    assert message.client_id == acme.client.id
    assert message.priority == "high"
    assert message.tags == ["signup", "code"]
    assert message.metadata == {"user": "42"}
    assert message.headers == {"X-Invoice": "7"}
    kinds = dict(Delivery.objects.filter(message=message).values_list("address", "kind"))
    assert kinds == {"ann@example.com": "to", "bob@example.com": "cc", "carl@example.com": "bcc"}
    assert wait_until_final(message.id).status == MessageStatus.DELIVERED
    [received] = sink.wait_for(1)
    assert sorted(received.rcpt_tos) == ["ann@example.com", "bob@example.com", "carl@example.com"]
    parsed = received.parsed
    assert parsed["To"] == "Ann <ann@example.com>" and parsed["Cc"] == "Bob <bob@example.com>"
    assert parsed["Bcc"] is None and parsed["X-Invoice"] == "7"
    assert parsed["Message-ID"] == message.message_id  # Mailhub's, one for every attempt
    assert not [name for name in parsed if name.lower().startswith("x-mailhub-")]
    assert parsed.get_body(("plain",)).get_content().strip() == "Your code is 123456."
    parts = {part.get_content_type(): part for part in parsed.walk()}
    assert parts["image/png"]["Content-ID"] == "<logo@shop.test>"
    assert parts["image/png"].get_payload(decode=True) == PNG
    assert parts["application/pdf"].get_filename() == "terms.pdf"


def test_a_test_mode_key_submits_test_mail_that_the_simulator_settles_and_no_relay_sees(
    sink, submission, acme
):
    tester = make_actor("acme", test_mode=True)
    with submission.connect() as smtp:
        smtp.login("acme", tester.key)
        test_id = queued_id(submit(smtp, mail().as_bytes(policy=SMTP)))
    with submission.connect() as smtp:
        smtp.login("acme", acme.key)
        live_id = queued_id(submit(smtp, mail(Subject="Live").as_bytes(policy=SMTP)))

    assert Message.objects.get(id=test_id).test_mode is True
    assert Message.objects.get(id=live_id).test_mode is False
    assert wait_until_final(test_id).status == MessageStatus.DELIVERED  # by the simulator
    assert wait_until_final(live_id).status == MessageStatus.DELIVERED
    [received] = sink.wait_for(1)
    assert received.parsed["Subject"] == "Live"


def test_one_connection_submits_many_messages_and_8bit_text_is_read_as_utf8(sink, submission, acme):
    raw = (
        "From: Café <no-reply@shop.test>\r\nTo: ann@example.com\r\nSubject: Grüße\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n"
        "\r\nDein Code: 123456 \u2013 bis später.\r\n"
    ).encode()
    with submission.connect() as smtp:
        smtp.login("acme", acme.key)
        ids = [queued_id(submit(smtp, raw)) for _ in range(3)]
    messages = Message.objects.filter(id__in=ids)
    assert messages.count() == 3
    assert {(m.subject, m.text_body.strip()) for m in messages} == {
        ("Grüße", "Dein Code: 123456 \u2013 bis später.")
    }


def test_the_readme_example_sends_as_printed(sink, submission, acme):
    readme = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- mailhub-smtp-submission -->\n```python\n(.*?)```\n<!-- /mailhub-smtp-submission -->",
        readme,
        re.S,
    )
    assert block, "the README's SMTP example is missing"
    env = {
        **os.environ,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(submission.port),
        "SMTP_CA_FILE": str(submission.cafile),
        "MAILHUB_API_KEY": acme.key,
    }
    run = subprocess.run(
        [sys.executable, "-c", block.group(1)], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    message = Message.objects.get(client=acme.client)
    assert (message.priority, message.tags) == ("high", ["signup", "code"])
    assert wait_until_final(message.id).status == MessageStatus.DELIVERED
    assert sink.wait_for(1)[0].rcpt_tos == ("ann@example.com",)


# -- refused: the right reply, nothing stored -------------------------------------------------


def test_a_wrong_key_gets_535_and_cannot_send(submission, transactional_db):
    with submission.connect() as smtp:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp.login("acme", "mh_not-a-key")
        assert refused.value.smtp_code == 535
        assert submit(smtp, mail().as_bytes(policy=SMTP))[0] == 530
    assert_nothing_stored()


def test_a_connection_gets_three_auth_attempts(submission):
    wrong = base64.b64encode(b"\0acme\0mh_wrong").decode()
    with submission.connect() as smtp:
        codes = [smtp.docmd("AUTH", f"PLAIN {wrong}")[0] for _ in range(4)]
    assert codes == [535, 535, 535, 421]


def test_mail_without_auth_gets_530(submission, transactional_db):
    with submission.connect() as smtp:
        code, text = smtp.mail("bounce@shop.test")
    assert (code, text) == (530, b"5.7.0 Authentication required")
    assert_nothing_stored()


def test_auth_before_starttls_gets_538_and_auth_is_not_even_offered(submission, acme):
    credentials = base64.b64encode(f"\0acme\0{acme.key}".encode()).decode()
    with smtplib.SMTP("127.0.0.1", submission.port, timeout=30) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls") and not smtp.has_extn("auth")
        code, text = smtp.docmd("AUTH", f"PLAIN {credentials}")
        assert code == 538 and text.startswith(b"5.7.11")
        assert smtp.mail("bounce@shop.test")[0] == 530
    assert_nothing_stored()


def test_an_oversized_message_gets_552_whether_or_not_it_was_announced(submission, acme):
    big = mail()
    big.set_content(("y" * 76 + "\n") * (SIZE_LIMIT // 77 + 10))
    content = big.as_bytes(policy=SMTP)
    assert len(content) > SIZE_LIMIT
    with submission.connect() as smtp:
        smtp.login("acme", acme.key)
        assert smtp.has_extn("size") and int(smtp.esmtp_features["size"]) == SIZE_LIMIT
        with pytest.raises(smtplib.SMTPSenderRefused) as announced:  # MAIL FROM ... SIZE=
            smtp.sendmail("bounce@shop.test", ["ann@example.com"], content)
        assert announced.value.smtp_code == 552
        smtp.rset()
        code, _ = submit(smtp, content)  # no SIZE: refused once the data is in
    assert code == 552
    assert_nothing_stored()


def test_a_rate_limited_key_gets_451_4_7_1_with_a_retry_hint_counting_api_requests_too(
    submission, acme
):
    api_key_set_rate_limit(key=acme.client.api_keys.get(), per_minute=2)
    assert acme.api.get("/api/v1/messages").status_code == 200  # one request of the API
    api_key_rate_check(key_id=acme.client.api_keys.get().id, limit=2)  # and one more
    with submission.connect() as smtp:
        smtp.login("acme", acme.key)
        code, text = submit(smtp, mail().as_bytes(policy=SMTP))
    assert code == 451
    assert re.fullmatch(
        rb"4\.7\.1 Rate limit of 2 messages per minute reached for this API key; "
        rb"try again in \d+ s",
        text,
    ), text
    assert_nothing_stored()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            raw(b"Subject: =?utf-8?q?hi=0D=0ABcc=3A_evil=40evil.test?="),
            rb"subject: Not allowed in a mail header: ",
        ),
        (
            mail(X_Mailhub_Priority="urgent").as_bytes(policy=SMTP),
            rb'priority: "urgent" is not a valid',
        ),
        (
            mail(X_Mailhub_Metadata="[1, 2]").as_bytes(policy=SMTP),
            rb"X-Mailhub-Metadata: A JSON object",
        ),
        (raw(b"X-Note: one\r\nx-note: two"), rb"headers.x-note: Header given twice"),
        (mail().as_bytes(policy=SMTP).replace(b"123456", b"12\x0056"), rb"text: Null characters"),
        (b"no header at all, just words\r\n", rb"Cannot parse the message: a line of the header"),
        (
            b"From: a@shop.test\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\nhi\r\n",
            rb"The text/plain part's charset 'x-klingon' is unknown",
        ),
    ],
    ids=["encoded Bcc", "priority", "metadata", "twice", "NUL", "no header", "charset"],
)
def test_a_message_the_api_would_refuse_gets_550_with_the_reason(submission, acme, content, reason):
    with submission.connect() as smtp:
        smtp.login("acme", acme.key)
        code, text = submit(smtp, content)
    assert code == 550 and text.startswith(b"5.6.0 " + reason), text
    assert b"\r" not in text and b"\n" not in text
    assert_nothing_stored()


def test_recipients_past_the_limit_get_452_and_bad_addresses_553(submission, acme):
    addresses = [f"r{i}@example.com" for i in range(MAX_RECIPIENTS)]
    with submission.connect() as smtp:
        smtp.login("acme", acme.key)
        assert smtp.mail("bounce@shop.test")[0] == 250
        assert smtp.rcpt("ann@example")[0] == 553  # the API's address rule: no TLD
        assert [smtp.rcpt(address)[0] for address in addresses] == [250] * MAX_RECIPIENTS
        code, text = smtp.rcpt("one-too-many@example.com")
        assert code == 452 and text.startswith(b"4.5.3"), text
        queued_id(smtp.data(mail().as_bytes(policy=SMTP)))
    message = Message.objects.get()
    assert sorted(message.deliveries.values_list("address", flat=True)) == addresses


def test_a_line_longer_than_smtp_allows_is_refused(submission, acme):
    content = mail().as_bytes(policy=SMTP).replace(b"123456.", b"123456." + b"z" * 2000)
    with submission.connect() as smtp:
        smtp.login("acme", acme.key)
        code, _ = submit(smtp, content)
    assert code == 500
    assert_nothing_stored()


def test_a_key_holds_at_most_its_connections_and_a_closed_one_frees_its_place(submission, acme):
    credentials = base64.b64encode(f"\0acme\0{acme.key}".encode()).decode()
    held = [submission.connect() for _ in range(CONNECTIONS_PER_KEY)]
    for smtp in held:
        smtp.login("acme", acme.key)
    with submission.connect() as extra:
        code, text = extra.docmd("AUTH", f"PLAIN {credentials}")
        assert code == 421 and text.startswith(b"4.7.0"), text
    held.pop().quit()
    with submission.connect() as again:
        assert again.login("acme", acme.key)[0] == 235
    for smtp in held:
        smtp.quit()


def test_a_key_revoked_mid_session_sends_nothing_more(submission, acme):
    with submission.connect() as smtp:
        smtp.login("acme", acme.key)
        api_key_revoke(key=acme.client.api_keys.get())
        code, text = smtp.mail("bounce@shop.test")
    assert code == 530, text
    assert_nothing_stored()


# -- development: AUTH without TLS, from loopback only ----------------------------------------


def test_plaintext_auth_from_loopback_works_when_development_allows_it(transactional_db, acme):
    config = submission_config(
        host="127.0.0.1", port=free_port(), tls_context=None, allow_plaintext_loopback=True
    )
    controller = SubmissionController(config)
    controller.start()
    try:
        with smtplib.SMTP("127.0.0.1", config.port, timeout=30) as smtp:
            smtp.login("acme", acme.key)
            message_id = queued_id(submit(smtp, mail().as_bytes(policy=SMTP)))
    finally:
        controller.stop_gracefully()
    assert Message.objects.get(id=message_id).client_id == acme.client.id


def test_the_api_and_smtp_agree_on_what_a_message_is(submission, acme):
    """The same message through both doors: the same stored fields."""
    payload = message_payload(subject="Same", text="Same body.\n", priority="low")
    assert acme.api.post("/api/v1/messages", payload, format="json").status_code == 202
    email = mail(Subject="Same", X_Mailhub_Priority="low")
    email.set_content("Same body.\n")
    with submission.connect() as smtp:
        smtp.login("acme", acme.key)
        queued_id(submit(smtp, email.as_bytes(policy=SMTP)))
    fields = ("sender", "subject", "text_body", "html_body", "priority", "tags", "headers")
    via_api, via_smtp = Message.objects.order_by("created_at").values(*fields)
    assert via_api == via_smtp


def test_the_benchmark_phase_counts_the_messages_accepted_over_its_connections(submission, acme):
    result = smtp_submit(
        port=submission.port,
        context=submission.tls_context(),
        api_key=acme.key,
        mail=Mail(),
        phase="bench",
        count=6,
        connections=CONNECTIONS_PER_KEY,
    )
    assert (result.accepted, sum(result.refused.values()), result.errors) == (6, 0, {})
    assert result.rate is not None and result.rate > 0
    assert Message.objects.filter(client=acme.client).count() == 6
