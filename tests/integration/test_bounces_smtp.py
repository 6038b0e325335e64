"""The `bounces` process (manage.py bounces_smtp, as the Procfile runs it) on the real Postgres:
reports from tests/data/bounces/, sent over SMTP to the VERP address of a delivered delivery,
bounce it or record a complaint; anything a verified token does not tie to the delivery's own
address changes nothing, and still gets its 250."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from deliveries.models import Delivery, Event, Message, Suppression
from deliveries.states import DeliveryStatus, MessageStatus
from deliveries.tokens import verp_address
from tests.integration.conftest import worker_log_dir
from tests.support.bounces import BouncesProcess, report_for
from tests.support.ops import seed_message
from tests.support.sink import free_port
from tests.support.workers import ROOT, database_url

# Committed data: the bounces process reads it from its own connection.
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

S = DeliveryStatus
DOMAIN = "bounces.example.com"
SIZE_LIMIT = 256 * 1024


def process_env(**overrides: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }


@pytest.fixture(scope="module")
def bounces(django_db_setup, django_db_blocker) -> Iterator[BouncesProcess]:
    server = BouncesProcess(
        "tests",
        env=process_env(),
        log_dir=worker_log_dir(),
        bounce_domain=DOMAIN,
        max_message_bytes=SIZE_LIMIT,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def delivered_to(client, address: str) -> Delivery:
    return seed_message(client, status=S.DELIVERED, recipients=(address,)).deliveries.get()


def unchanged(delivery: Delivery) -> bool:
    status = Delivery.objects.get(id=delivery.id).status
    return (
        status == S.DELIVERED
        and not Suppression.objects.filter(address=delivery.address).exists()
        and not Event.objects.filter(
            delivery=delivery, type__in=[Event.Type.BOUNCED, Event.Type.COMPLAINED]
        ).exists()
    )


def test_a_dsn_bounces_the_delivery_its_verp_address_names_and_suppresses_the_address(
    bounces, acme
):
    delivery = delivered_to(acme.client, "ann@example.com")
    content, rcpt = report_for("postfix_user_unknown", delivery.id, bounce_domain=DOMAIN)

    assert bounces.send(content, rcpt=rcpt)[0] == 250  # answered once applied

    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_code, delivery.last_enhanced_code) == (
        S.BOUNCED,
        550,
        "5.1.1",
    )
    assert "User unknown in local recipient table" in delivery.last_reply
    event = Event.objects.get(delivery=delivery, type=Event.Type.BOUNCED)
    assert (event.smtp_code, event.enhanced_code) == (550, "5.1.1")
    suppression = Suppression.objects.get(client=acme.client, address="ann@example.com")
    assert suppression.reason == Suppression.Reason.HARD_BOUNCE
    assert Message.objects.get(id=delivery.message_id).status == MessageStatus.BOUNCED
    # The same report again (servers do repeat them) changes nothing more.
    assert bounces.send(content, rcpt=rcpt)[0] == 250
    assert Event.objects.filter(delivery=delivery, type=Event.Type.BOUNCED).count() == 1


@pytest.mark.parametrize(
    ("sample", "address"),
    [("exim_plain", "ann@example.org"), ("exchange_o365", "ann@contoso.example")],
)
def test_other_real_world_bounces_bounce_their_delivery(bounces, acme, sample, address):
    delivery = delivered_to(acme.client, address)
    content, rcpt = report_for(sample, delivery.id, bounce_domain=DOMAIN)

    assert bounces.send(content, rcpt=rcpt)[0] == 250

    assert Delivery.objects.get(id=delivery.id).status == S.BOUNCED
    assert Suppression.objects.filter(client=acme.client, address=address).exists()


@pytest.mark.parametrize("sample", ["arf_yahoo", "arf_aol"])
def test_a_complaint_to_the_feedback_address_suppresses_the_quoted_delivery(bounces, acme, sample):
    delivery = delivered_to(acme.client, "ann@yahoo.com")
    content, _ = report_for(sample, delivery.id, bounce_domain=DOMAIN)

    # Feedback loops send to the address registered with them, not to the VERP address: the
    # token comes from the quoted message (Original-Mail-From, or its Return-Path for AOL).
    assert bounces.send(content, rcpt=f"fbl@{DOMAIN}")[0] == 250

    assert Delivery.objects.get(id=delivery.id).status == S.DELIVERED
    event = Event.objects.get(delivery=delivery, type=Event.Type.COMPLAINED)
    assert event.reply.startswith("abuse report from")
    suppression = Suppression.objects.get(client=acme.client, address="ann@yahoo.com")
    assert suppression.reason == Suppression.Reason.COMPLAINT


def test_a_forged_token_changes_nothing(bounces, acme):
    delivery = delivered_to(acme.client, "ann@example.com")
    content, rcpt = report_for("postfix_user_unknown", delivery.id, bounce_domain=DOMAIN)
    local, _, domain = rcpt.partition("@")
    forged = f"{local[:-1]}{'a' if local[-1] != 'a' else 'b'}@{domain}"  # one letter of the MAC

    assert bounces.send(content.replace(rcpt.encode(), forged.encode()), rcpt=forged)[0] == 250
    complaint, _ = report_for("arf_yahoo", delivery.id, bounce_domain=DOMAIN)
    assert bounces.send(complaint.replace(rcpt.encode(), forged.encode()), rcpt=forged)[0] == 250

    assert unchanged(delivery)


def test_a_report_about_another_recipient_changes_nothing(bounces, acme):
    delivery = delivered_to(acme.client, "bob@example.com")
    # A genuine token, but the report says ann@example.com failed, not bob.
    content, rcpt = report_for("postfix_user_unknown", delivery.id, bounce_domain=DOMAIN)

    assert bounces.send(content, rcpt=rcpt)[0] == 250

    assert unchanged(delivery)


@pytest.mark.parametrize("sample", ["postfix_delayed", "autoreply_out_of_office", "malformed"])
def test_a_delay_an_auto_reply_or_a_malformed_report_changes_nothing(bounces, acme, sample):
    delivery = delivered_to(acme.client, "ann@example.com")
    content, rcpt = report_for(sample, delivery.id, bounce_domain=DOMAIN)

    assert bounces.send(content, rcpt=rcpt)[0] == 250

    assert unchanged(delivery)


def test_mail_for_another_domain_is_refused_at_rcpt(bounces, acme):
    delivery = delivered_to(acme.client, "ann@example.com")
    content, rcpt = report_for("postfix_user_unknown", delivery.id, bounce_domain=DOMAIN)
    elsewhere = rcpt.replace(DOMAIN, "example.org")

    code, text = bounces.send(content, rcpt=elsewhere)

    assert code == 550 and b"Relaying denied" in text
    assert unchanged(delivery)


def test_a_report_over_the_size_limit_is_refused(bounces, acme):
    delivery = delivered_to(acme.client, "ann@example.com")
    content, rcpt = report_for("postfix_user_unknown", delivery.id, bounce_domain=DOMAIN)
    padded = content.replace(b"Return-Path: <>\n", b"Return-Path: <>\n" + b"X-Pad: y\n" * 30_000)

    code, _ = bounces.send(padded, rcpt=rcpt)

    assert len(padded) > SIZE_LIMIT and code == 552
    assert unchanged(delivery)


def test_without_a_bounce_domain_the_process_runs_and_refuses_every_recipient(acme):
    server = BouncesProcess(
        "no-domain", env=process_env(), log_dir=worker_log_dir(), bounce_domain=""
    )
    server.start()
    try:
        code, text = server.send(b"Subject: x\n\nx\n", rcpt=f"bounce+abc@{DOMAIN}")
        assert code == 550 and b"no bounce domain" in text
        assert server.process is not None and server.process.poll() is None
    finally:
        server.stop()


def test_with_the_database_away_a_report_gets_451_so_the_sender_tries_again(acme):
    delivery = delivered_to(acme.client, "ann@example.com")
    away = f"postgres://mailhub:mailhub@127.0.0.1:{free_port()}/mailhub"
    server = BouncesProcess(
        "no-database",
        env=process_env(DATABASE_URL=away),
        log_dir=worker_log_dir(),
        bounce_domain=DOMAIN,
    )
    server.start()
    try:
        content, rcpt = report_for("postfix_user_unknown", delivery.id, bounce_domain=DOMAIN)
        code, _ = server.send(content, rcpt=rcpt)
    finally:
        server.stop()

    assert code == 451
    assert unchanged(delivery)


def test_the_readme_example_bounces_a_delivery_as_printed(bounces, acme):
    readme = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- mailhub-bounce-example -->\n```python\n(.*?)```\n<!-- /mailhub-bounce-example -->",
        readme,
        re.S,
    )
    assert block, "the README's bounce example is missing"
    delivery = delivered_to(acme.client, "ann@example.com")
    env = {**os.environ, "BOUNCES_HOST": "127.0.0.1", "BOUNCES_PORT": str(bounces.port)}
    verp = verp_address(delivery.id, bounce_domain=DOMAIN)

    run = subprocess.run(
        [sys.executable, "-c", block.group(1), verp, "ann@example.com"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode == 0, run.stderr
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_enhanced_code) == (S.BOUNCED, "5.1.1")
