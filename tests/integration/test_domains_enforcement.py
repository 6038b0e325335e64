"""A client sends only From: its usable domains, whichever way the mail comes in: the REST API
(one message, or each message of a batch on its own), Django's email backend, bulk_send and SMTP
submission all go through the one accept, which refuses the rest with a problem naming the
domain. tests/settings.py allows any domain for the other tests; these turn the check back on."""

from __future__ import annotations

import smtplib
from datetime import timedelta
from email.message import EmailMessage
from email.policy import SMTP
from io import StringIO

import pytest
from django.core.mail import get_connection, send_mail
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from api.submission import SubmissionController, submission_config
from deliveries.models import Message, Template
from deliveries.services import MessageDraft, Recipient, messages_accept
from domains.errors import SenderDomainNotVerified
from domains.models import SendingDomain
from domains.services import domain_create, domain_mark_verified_locally
from tests.builders import make_actor, message_payload
from tests.integration.test_api_input import assert_nothing_stored
from tests.support.sink import free_port

pytestmark = pytest.mark.integration

CODE = "sender_domain_not_verified"


@pytest.fixture(autouse=True)
def enforced(settings):
    settings.MAILHUB_ALLOW_UNVERIFIED_DOMAINS = False


def verified(client, name: str, **options) -> SendingDomain:
    domain = domain_create(client=client, domain=name, **options)
    return domain_mark_verified_locally(domain_id=domain.id)


def in_state(client, name: str, state: str, *, failing_for: timedelta | None = None) -> None:
    domain = domain_create(client=client, domain=name)
    since = timezone.now() - failing_for if failing_for is not None else None
    SendingDomain.objects.filter(id=domain.id).update(state=state, failing_since=since)


def send(actor, sender: str):
    return actor.api.post("/api/v1/messages", message_payload(**{"from": sender}), format="json")


def assert_refused(answer, domain: str, why: str) -> None:
    assert answer.status_code == 400, answer.content
    problem = answer.json()
    assert answer["Content-Type"] == "application/problem+json"
    assert (problem["code"], problem["domain"]) == (CODE, domain)
    assert why in problem["detail"] and domain in problem["detail"]


# -- the REST API ---------------------------------------------------------------------------------


def test_mail_from_a_domain_the_client_never_added_is_refused_naming_it(acme):
    assert_refused(send(acme, "Shop <no-reply@shop.test>"), "shop.test", "not one of this client")
    assert_nothing_stored()


def test_mail_from_a_verified_domain_is_accepted_whatever_the_case_of_the_address(acme):
    verified(acme.client, "shop.test")
    assert send(acme, "Shop <no-reply@SHOP.Test>").status_code == 202


def test_another_clients_verified_domain_does_not_help(acme, globex):
    verified(globex.client, "shop.test")
    assert_refused(send(acme, "no-reply@shop.test"), "shop.test", "not one of this client")


@pytest.mark.parametrize(
    ("state", "failing_for", "accepted", "why"),
    [
        ("pending", None, False, "not verified yet"),
        ("failing", timedelta(hours=1), True, ""),
        ("failing", timedelta(hours=73), False, "suspended"),
        ("suspended", timedelta(days=5), False, "suspended"),
    ],
)
def test_a_domain_is_usable_verified_or_failing_within_its_grace(
    acme, state, failing_for, accepted, why
):
    in_state(acme.client, "shop.test", state, failing_for=failing_for)
    answer = send(acme, "no-reply@shop.test")
    if accepted:
        assert answer.status_code == 202, answer.content
    else:
        assert_refused(answer, "shop.test", why)


def test_subdomains_are_allowed_only_when_the_domain_says_so(acme):
    verified(acme.client, "shop.test")
    assert_refused(send(acme, "no-reply@eu.shop.test"), "eu.shop.test", "not one of")
    verified(acme.client, "brand.test", allow_subdomains=True)
    assert send(acme, "no-reply@mail.eu.brand.test").status_code == 202
    assert send(acme, "no-reply@brand.test").status_code == 202
    assert_refused(send(acme, "no-reply@notbrand.test"), "notbrand.test", "not one of")


def test_a_test_mode_key_may_use_a_domain_not_verified_yet_but_not_an_unknown_one(acme):
    tester = make_actor("acme", test_mode=True)
    in_state(acme.client, "shop.test", "pending")
    assert send(tester, "no-reply@shop.test").status_code == 202
    assert_refused(send(tester, "no-reply@other.test"), "other.test", "not one of")


def test_with_unverified_domains_allowed_any_from_is_accepted(acme, settings):
    settings.MAILHUB_ALLOW_UNVERIFIED_DOMAINS = True
    assert send(acme, "no-reply@anything.test").status_code == 202


def test_in_a_batch_a_refused_domain_fails_its_message_alone_with_its_reason(acme):
    verified(acme.client, "shop.test")
    messages = [
        message_payload(**{"from": "a@shop.test"}),
        message_payload(**{"from": "b@other.test"}),
        message_payload(**{"from": "c@shop.test", "priority": "urgent"}),  # invalid on its own
        message_payload(**{"from": "d@shop.test"}),
        message_payload(**{"from": "e@other.test"}),
    ]
    answer = acme.api.post("/api/v1/messages/batch", {"messages": messages}, format="json")
    assert answer.status_code == 207, answer.content
    body = answer.json()
    results = body["results"]
    assert (body["accepted"], body["rejected"]) == (2, 3)
    assert ["id" if "id" in r else r["error"]["code"] for r in results] == [
        "id",
        CODE,
        "validation_error",
        "id",
        CODE,
    ]
    for index in (1, 4):
        error = results[index]["error"]
        assert (error["code"], error["domain"], error["status"]) == (CODE, "other.test", 400)
        assert "other.test" in error["detail"]
    assert sorted(m.sender for m in Message.objects.all()) == ["a@shop.test", "d@shop.test"]


def test_one_query_per_accept_however_many_messages_and_senders(acme):
    verified(acme.client, "shop.test", allow_subdomains=True)
    drafts = [
        MessageDraft(
            sender=f"n{i}@{['shop.test', 'eu.shop.test', 'x.eu.shop.test'][i % 3]}",
            recipients=[Recipient(address=f"r{i}@example.com")],
            subject="s",
            text="t",
        )
        for i in range(60)
    ]
    with CaptureQueriesContext(connection) as queries:
        messages_accept(client=acme.client, drafts=drafts)
    asked = [q["sql"] for q in queries.captured_queries if "domains_sendingdomain" in q["sql"]]
    assert len(asked) == 1


# -- the other ways in ----------------------------------------------------------------------------


def test_the_email_backend_refuses_it_or_drops_it_when_failing_silently(acme, settings):
    settings.MAILHUB_EMAIL_BACKEND_CLIENT = "acme"

    def send(**options) -> int:
        connection = get_connection("api.backends.MailhubBackend", **options)
        return send_mail(
            "Hi", "Body", "no-reply@shop.test", ["ann@example.com"], connection=connection
        )

    with pytest.raises(SenderDomainNotVerified, match=r"shop\.test"):
        send()
    assert send(fail_silently=True) == 0
    assert_nothing_stored()
    verified(acme.client, "shop.test")
    assert send() == 1


def test_bulk_send_stops_before_the_first_row(acme, tmp_path):
    Template.objects.create(client=acme.client, name="welcome", subject="Hi", text="Hello")
    path = tmp_path / "list.csv"
    path.write_text("email\nann@example.com\nbob@example.com\n")
    arguments = ["bulk_send", str(path), "--template", "welcome", "--client", "acme"]
    for dry_run in ([], ["--dry-run"]):
        with pytest.raises(CommandError, match=r"no-reply@shop\.test: shop\.test is not one of"):
            call_command(*arguments, "--from", "no-reply@shop.test", *dry_run, stdout=StringIO())
    assert_nothing_stored()
    verified(acme.client, "shop.test")
    call_command(*arguments, "--from", "no-reply@shop.test", stdout=StringIO())
    assert Message.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_smtp_submission_answers_550_5_7_1_naming_the_domain(acme):
    config = submission_config(
        host="127.0.0.1", port=free_port(), tls_context=None, allow_plaintext_loopback=True
    )
    controller = SubmissionController(config)
    controller.start()
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = (
        "no-reply@shop.test",
        "ann@example.com",
        "Hi",
    )
    message.set_content("Hello")
    try:
        with smtplib.SMTP("127.0.0.1", config.port, timeout=30) as smtp:
            smtp.login("acme", acme.key)
            smtp.mail("no-reply@shop.test")
            smtp.rcpt("ann@example.com")
            code, text = smtp.data(message.as_bytes(policy=SMTP))
            assert code == 550 and text.startswith(b"5.7.1 shop.test is not one of"), text
            verified(acme.client, "shop.test")
            smtp.mail("no-reply@shop.test")
            smtp.rcpt("ann@example.com")
            assert smtp.data(message.as_bytes(policy=SMTP))[0] == 250
    finally:
        controller.stop_gracefully()
    assert Message.objects.count() == 1


def test_send_test_mail_says_which_domain_to_add(db):
    with pytest.raises(CommandError, match=r"manage\.py domains add operations localhost"):
        call_command("send_test_mail", "ann@example.com", stdout=StringIO())
    assert_nothing_stored()
