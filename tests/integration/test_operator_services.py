"""Operator services on the real Postgres: each moves exactly the rows it may, through the state
machine, and never a delivered one."""

from datetime import timedelta

import pytest
from django.utils import timezone

from deliveries import selectors
from deliveries.models import Attachment, Attempt, Delivery, Event, Message
from deliveries.services import operator, retention
from deliveries.states import DeliveryStatus, MessageStatus
from tests.support.ops import seed_message, statuses_of

pytestmark = pytest.mark.integration
S = DeliveryStatus


def ids_of(*messages) -> list[int]:
    return list(
        Delivery.objects.filter(message__in=messages).order_by("id").values_list("id", flat=True)
    )


def test_retry_now_queues_deferred_and_failed_deliveries_and_leaves_the_rest(acme):
    deferred = seed_message(acme.client, status=S.DEFERRED)
    failed = seed_message(acme.client, status=S.FAILED, age=timedelta(hours=3))
    delivered = seed_message(acme.client, status=S.DELIVERED)
    scheduled = seed_message(acme.client, send_at=timezone.now() + timedelta(hours=1))
    before = timezone.now()

    result = operator.deliveries_retry_now(
        delivery_ids=ids_of(deferred, failed, delivered, scheduled)
    )

    assert (result.requested, result.changed) == (4, 2)
    assert result.messages == {deferred.id, failed.id}
    assert statuses_of(deferred) == statuses_of(failed) == [S.QUEUED]
    assert statuses_of(delivered) == [S.DELIVERED]
    assert statuses_of(scheduled) == [S.SCHEDULED]
    for message in (deferred, failed):
        message.refresh_from_db()
        assert message.status == MessageStatus.QUEUED
        delivery = message.deliveries.get()
        assert (
            delivery.next_attempt_at > before
        )  # the dispatcher republishes it if the task is lost
        assert delivery.attempts == 1  # numbering of attempts goes on
    # The failed message had outlived its lifetime; it got a new one, the deferred one kept its.
    assert failed.expires_at > before + timedelta(minutes=59)


def test_retry_now_publishes_after_commit(acme, django_capture_on_commit_callbacks):
    deferred = seed_message(acme.client, status=S.DEFERRED)

    with django_capture_on_commit_callbacks() as callbacks:
        operator.deliveries_retry_now(delivery_ids=ids_of(deferred))

    assert len(callbacks) == 1


def test_cancel_stops_what_is_not_sent_and_nothing_else(acme):
    queued = seed_message(acme.client)
    deferred = seed_message(acme.client, status=S.DEFERRED)
    sending = seed_message(acme.client, status=S.SENDING)
    delivered = seed_message(acme.client, status=S.DELIVERED)

    result = operator.deliveries_cancel(delivery_ids=ids_of(queued, deferred, sending, delivered))

    assert (result.requested, result.changed) == (4, 2)
    assert statuses_of(queued) == statuses_of(deferred) == [S.CANCELLED]
    assert statuses_of(sending) == [S.SENDING]
    assert statuses_of(delivered) == [S.DELIVERED]
    assert Message.objects.get(id=queued.id).status == MessageStatus.CANCELLED
    cancelled = Event.objects.filter(type=Event.Type.CANCELLED)
    assert sorted(cancelled.values_list("message_id", flat=True)) == sorted(
        [queued.id, deferred.id]
    )


def test_requeue_republishes_queued_deliveries_without_changing_their_status(acme):
    queued = seed_message(acme.client)
    Delivery.objects.filter(message=queued).update(next_attempt_at=timezone.now())
    deferred = seed_message(acme.client, status=S.DEFERRED)

    result = operator.deliveries_requeue(delivery_ids=ids_of(queued, deferred))

    assert (result.requested, result.changed) == (2, 1)
    assert statuses_of(queued) == [S.QUEUED]
    assert Delivery.objects.get(message=queued).next_attempt_at > timezone.now()
    assert statuses_of(deferred) == [S.DEFERRED]


def test_resend_accepts_a_copy_to_every_recipient_and_keeps_the_original(acme):
    original = seed_message(
        acme.client, status=S.DELIVERED, recipients=("ann@example.com", "bob@example.com")
    )
    Attachment.objects.create(
        message=original, filename="a.txt", content_type="text/plain", content=b"hi", size=2
    )

    [copy] = operator.messages_resend(message_ids=[original.id])

    assert copy.id != original.id and copy.message_id != original.message_id
    assert copy.client_id == original.client_id
    assert (copy.subject, copy.text_body, copy.html_body) == (
        original.subject,
        original.text_body,
        original.html_body,
    )
    assert copy.metadata["resent_from"] == str(original.id)
    assert statuses_of(copy) == [S.QUEUED, S.QUEUED]
    assert sorted(copy.deliveries.values_list("address", flat=True)) == [
        "ann@example.com",
        "bob@example.com",
    ]
    assert bytes(copy.attachments.get().content) == b"hi"
    assert statuses_of(original) == [S.DELIVERED, S.DELIVERED]


def test_purge_deletes_old_finished_messages_with_everything_they_own(acme):
    old_delivered = seed_message(acme.client, status=S.DELIVERED, age=timedelta(days=40))
    old_bounced = seed_message(acme.client, status=S.BOUNCED, age=timedelta(days=31))
    old_waiting = seed_message(acme.client, status=S.DEFERRED, age=timedelta(days=40))
    recent = seed_message(acme.client, status=S.DELIVERED, age=timedelta(days=2))
    batches = []

    deleted = retention.messages_purge(
        created_before=timezone.now() - timedelta(days=30), batch_size=1, on_batch=batches.append
    )

    assert deleted == 2 and batches == [1, 1]
    remaining = set(Message.objects.values_list("id", flat=True))
    assert remaining == {old_waiting.id, recent.id}
    for model in (Delivery, Event, Attachment):
        assert not model.objects.filter(message_id__in=[old_delivered.id, old_bounced.id]).exists()
    assert not Attempt.objects.filter(
        delivery__message_id__in=[old_delivered.id, old_bounced.id]
    ).exists()
    assert Attempt.objects.filter(delivery__message=recent).count() == 1


def test_purge_of_one_client_leaves_the_others(acme, globex):
    seed_message(acme.client, status=S.DELIVERED, age=timedelta(days=40))
    kept = seed_message(globex.client, status=S.DELIVERED, age=timedelta(days=40))

    deleted = retention.messages_purge(
        created_before=timezone.now() - timedelta(days=30), client="acme"
    )

    assert deleted == 1
    assert list(Message.objects.values_list("id", flat=True)) == [kept.id]


def test_a_selection_filters_by_domain_age_client_and_status(acme, globex):
    old = seed_message(
        acme.client, status=S.FAILED, age=timedelta(days=2), recipients=("a@old.test",)
    )
    young = seed_message(acme.client, status=S.FAILED, recipients=("a@young.test",))
    other = seed_message(globex.client, status=S.DEFERRED, recipients=("b@young.test",))

    def select(**fields) -> set:
        queryset = selectors.deliveries_select(
            selection=selectors.DeliverySelection(**fields), allowed=operator.RETRYABLE
        )
        return set(queryset.values_list("message_id", flat=True))

    assert select(domain="young.test") == {young.id, other.id}
    assert select(older_than=timedelta(days=1)) == {old.id}
    assert select(newer_than=timedelta(days=1)) == {young.id, other.id}
    assert select(client="globex") == {other.id}
    assert select(statuses=["deferred"]) == {other.id}
    assert select(statuses=["delivered"]) == set()  # not a status retry may move
