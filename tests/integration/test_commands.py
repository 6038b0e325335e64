"""The management commands on a seeded database: what they print, what they change, and their
exit codes (CommandError carries the code `manage.py` exits with)."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from accounts.models import ApiKey, IdempotencyRecord
from accounts.services import api_key_create, api_key_hash
from deliveries.models import Delivery, Message, Suppression
from deliveries.states import DeliveryStatus
from tests.support.ops import seed_message, statuses_of
from tests.support.sink import free_port
from tests.support.workers import ROOT, database_url

pytestmark = pytest.mark.integration
S = DeliveryStatus


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def manage(*args) -> subprocess.CompletedProcess:
    """The command as an operator runs it, in its own process, for its real exit code."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def queue(acme):
    """A small queue: waiting mail of every kind in two priorities, and finished mail."""
    return {
        "queued": seed_message(acme.client, priority="high", subject="Reset your password"),
        "deferred": seed_message(acme.client, status=S.DEFERRED, priority="normal"),
        "scheduled": seed_message(
            acme.client, send_at=timezone.now() + timedelta(hours=2), priority="low"
        ),
        "old_waiting": seed_message(
            acme.client, status=S.DEFERRED, age=timedelta(minutes=30), subject="Stuck one"
        ),
        "delivered": seed_message(acme.client, status=S.DELIVERED),
    }


def test_mailq_shows_each_priority_the_oldest_message_and_the_longest_waiting(queue):
    text = run("mailq", "--list", "2")

    lines = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    assert lines["high"][1:4] == ["1", "0", "0"]  # queued, sending, deferred
    assert lines["normal"][1:4] == ["0", "0", "2"]
    assert lines["low"][1] == "0" and "in 1h59m" in text  # scheduled, released in about 2 h
    assert lines["total"][1:5] == ["1", "0", "2", "1"]
    assert f"Oldest waiting: message {queue['old_waiting'].id}" in text
    assert "'Stuck one'" in text and "last reply: 451 4.7.1 try later" in text
    listed = [line for line in text.splitlines() if str(queue["old_waiting"].id) in line]
    assert len(listed) == 2  # in the summary and first in the list


def test_mailq_json_has_the_same_numbers(queue):
    body = json.loads(run("mailq", "--json", "--list", "10"))

    assert body["priorities"]["high"]["queued"] == 1
    assert body["priorities"]["normal"]["deferred"] == 2
    assert body["priorities"]["normal"]["next_retry_at"] is not None
    assert body["priorities"]["low"]["scheduled"] == 1
    assert body["totals"] == {"queued": 1, "sending": 0, "deferred": 2, "scheduled": 1}
    assert body["oldest_waiting"]["message_id"] == str(queue["old_waiting"].id)
    assert body["rabbitmq"]["reachable"] is True
    assert body["priorities"]["high"]["rabbitmq"]["queue"].endswith("mail.high")
    assert body["waiting"][0]["message_id"] == str(queue["old_waiting"].id)
    assert len(body["waiting"]) == 3  # scheduled mail is not waiting


def test_mailq_prints_the_database_part_and_exits_3_when_rabbitmq_is_down(queue):
    out = StringIO()
    closed = free_port()
    broker = override_settings(CELERY_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{closed}//")
    with broker, pytest.raises(CommandError, match="RabbitMQ did not answer") as error:
        call_command("mailq", "--broker-timeout", "0.5", stdout=out)

    assert error.value.returncode == 3
    assert "Oldest waiting" in out.getvalue()


def test_retry_by_status_retries_only_deferred_and_reports(queue):
    text = run("retry", "--status", "deferred")

    assert text.strip() == "2 of 2 matching deliveries retried (2 messages)."
    assert statuses_of(queue["deferred"]) == statuses_of(queue["old_waiting"]) == [S.QUEUED]
    assert statuses_of(queue["delivered"]) == [S.DELIVERED]


def test_retry_by_age_and_dry_run(queue):
    assert run("retry", "--older-than", "10m", "--dry-run").strip() == (
        "1 deliveries match; would be retried (dry run)."
    )
    assert statuses_of(queue["old_waiting"]) == [S.DEFERRED]

    run("retry", "--older-than", "10m")

    assert statuses_of(queue["old_waiting"]) == [S.QUEUED]
    assert statuses_of(queue["deferred"]) == [S.DEFERRED]


def test_cancel_by_domain_and_message(acme, queue):
    other = seed_message(acme.client, recipients=("a@elsewhere.test", "b@example.com"))

    text = run("cancel", "--domain", "elsewhere.test")
    assert text.strip() == "1 of 1 matching deliveries cancelled (1 messages)."
    assert statuses_of(other) == [S.CANCELLED, S.QUEUED]

    run("cancel", "--message", str(queue["scheduled"].id))
    assert statuses_of(queue["scheduled"]) == [S.CANCELLED]
    assert Message.objects.get(id=queue["scheduled"].id).status == "cancelled"


def test_cancel_never_touches_delivered_mail(queue):
    text = run("cancel", "--message", str(queue["delivered"].id))

    assert text.strip() == "0 of 0 matching deliveries cancelled (0 messages)."
    assert statuses_of(queue["delivered"]) == [S.DELIVERED]


def test_requeue_republishes_queued_deliveries(queue):
    Delivery.objects.filter(message=queue["queued"]).update(next_attempt_at=timezone.now())

    text = run("requeue", "--priority", "high")

    assert text.strip() == "1 of 1 matching deliveries requeued (1 messages)."
    assert statuses_of(queue["queued"]) == [S.QUEUED]


def test_a_command_without_a_selection_refuses_to_touch_everything(queue):
    with pytest.raises(CommandError, match="Name the deliveries") as error:
        run("cancel")

    assert error.value.returncode == 1
    assert statuses_of(queue["queued"]) == [S.QUEUED]


def test_purge_deletes_old_finished_messages_only(acme, queue):
    old = seed_message(acme.client, status=S.DELIVERED, age=timedelta(days=45))
    old_stuck = seed_message(acme.client, status=S.DEFERRED, age=timedelta(days=45))

    assert "1 finished messages" in run("purge", "--older-than", "30d", "--dry-run")
    assert Message.objects.filter(id=old.id).exists()
    text = run("purge", "--older-than", "30d", "--batch-size", "1")

    assert text.startswith("Deleted 1 finished messages accepted before")
    assert not Message.objects.filter(id=old.id).exists()
    assert Message.objects.filter(id=old_stuck.id).exists()
    assert Message.objects.count() == len(queue) + 1


def test_purge_also_deletes_expired_idempotency_keys_only(acme):
    now = timezone.now()
    common = {"client": acme.client, "request_hash": "0" * 64, "response_status": 202}
    IdempotencyRecord.objects.create(
        key="old", response_body={}, created_at=now, expires_at=now - timedelta(minutes=1), **common
    )
    IdempotencyRecord.objects.create(
        key="fresh", response_body={}, created_at=now, expires_at=now + timedelta(hours=1), **common
    )

    assert "and 1 expired idempotency keys" in run("purge", "--older-than", "30d")
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]


def test_create_api_key_with_its_own_rate_limit(db):
    secret = run("create_api_key", "acme", "--rate-limit", "30").strip()

    key = ApiKey.objects.get(key_hash=api_key_hash(secret))
    assert key.rate_limit_per_minute == 30 and key.client.name == "acme"
    with pytest.raises(CommandError, match="at least 1"):
        run("create_api_key", "acme", "--rate-limit", "0")


def test_suppress_and_unsuppress(acme):
    assert run("suppress", "acme", "Ann@Example.com", "bob@example.com").strip() == (
        "Suppressed 2 address(es) for acme."
    )
    assert "ann@example.com was already suppressed." in run("suppress", "acme", "ann@example.com")
    assert set(Suppression.objects.values_list("address", flat=True)) == {
        "ann@example.com",
        "bob@example.com",
    }

    assert "Removed 1 address(es)" in run("unsuppress", "acme", "ANN@example.com")
    assert list(Suppression.objects.values_list("address", flat=True)) == ["bob@example.com"]
    with pytest.raises(CommandError, match="None of the addresses") as error:
        run("unsuppress", "acme", "ann@example.com")
    assert error.value.returncode == 1


def test_suppress_for_an_unknown_client_fails(db):
    with pytest.raises(CommandError, match="No client named 'nobody'"):
        run("suppress", "nobody", "a@example.com")


def test_revoke_api_key_by_prefix_then_again(acme):
    key = ApiKey.objects.get(client=acme.client)

    assert run("revoke_api_key", key.prefix).startswith(f"Revoked {key.prefix}")
    assert "already revoked" in run("revoke_api_key", str(key.id))
    assert acme.api.get("/api/v1/messages/00000000-0000-0000-0000-000000000000").status_code == 401


def test_revoke_api_key_refuses_an_unknown_or_ambiguous_key(acme):
    with pytest.raises(CommandError, match="No API key"):
        run("revoke_api_key", "mh_unknown")
    key = ApiKey.objects.get(client=acme.client)
    twin, _ = api_key_create(client=acme.client, name="twin")
    ApiKey.objects.filter(id=twin.id).update(prefix=key.prefix)
    with pytest.raises(CommandError, match="names 2 keys"):
        run("revoke_api_key", key.prefix)
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 2


def test_exit_codes_of_a_real_process_usage_2_error_1_ok_0(transactional_db):
    usage = manage("retry", "--older-than", "3x")
    error = manage("unsuppress", "nobody", "a@example.com")
    ok = manage("mailq", "--json")

    assert usage.returncode == 2 and "not a duration" in usage.stderr
    assert error.returncode == 1 and "No client named 'nobody'" in error.stderr
    assert ok.returncode == 0 and json.loads(ok.stdout)["totals"]["queued"] == 0


def test_send_test_mail_refuses_a_malformed_address_before_accepting_anything(db):
    with pytest.raises(CommandError, match="Not an address") as error:
        run("send_test_mail", "not-an-address")

    assert error.value.returncode == 1
    assert not Message.objects.exists()
