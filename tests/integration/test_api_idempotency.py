"""Idempotency-Key: a retry gets the first answer and creates nothing, also when the retries
arrive at the same moment (real Postgres, parallel requests on their own connections)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.idempotency import idempotency_purge
from accounts.models import IdempotencyRecord
from deliveries.models import Message
from tests.builders import message_payload
from tests.integration.test_api_input import assert_problem

pytestmark = pytest.mark.integration

URL = "/api/v1/messages"


def post(actor, payload=None, *, key="order-42", url=URL):
    return actor.api.post(
        url, payload or message_payload(), format="json", HTTP_IDEMPOTENCY_KEY=key
    )


def test_a_retry_with_the_same_key_gets_the_same_answer_and_creates_nothing(acme):
    first = post(acme)
    again = post(acme)

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    assert Message.objects.count() == 1


def test_the_same_body_with_its_keys_in_another_order_is_the_same_request(acme):
    payload = message_payload()
    reordered = dict(reversed(list(payload.items())))
    assert post(acme, payload).json() == post(acme, reordered).json()
    assert Message.objects.count() == 1


def test_reusing_a_key_for_another_body_or_endpoint_is_refused(acme):
    post(acme, message_payload(subject="first"))
    other_body = post(acme, message_payload(subject="second"))
    assert_problem(other_body, status=422, code="idempotency_key_reused")
    other_endpoint = post(acme, {"messages": [message_payload()]}, url=f"{URL}/batch")
    assert_problem(other_endpoint, status=422, code="idempotency_key_reused")
    assert Message.objects.count() == 1


def test_without_a_key_every_request_creates_a_message(acme):
    acme.api.post(URL, message_payload(), format="json")
    acme.api.post(URL, message_payload(), format="json")
    assert Message.objects.count() == 2


def test_keys_belong_to_one_client(acme, globex):
    ours = post(acme).json()["id"]
    theirs = post(globex).json()["id"]
    assert ours != theirs
    assert set(Message.objects.values_list("client__name", flat=True)) == {"acme", "globex"}


def test_a_refused_request_does_not_use_up_its_key(acme):
    refused = post(acme, message_payload(to=["not-an-address"]))
    assert refused.status_code == 400
    assert not IdempotencyRecord.objects.exists()
    assert post(acme).status_code == 202
    assert Message.objects.count() == 1


def test_a_key_is_kept_at_least_a_day_and_an_expired_one_starts_afresh(acme):
    first = post(acme).json()["id"]
    record = IdempotencyRecord.objects.get()
    assert record.expires_at - record.created_at >= timedelta(hours=24)

    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    second = post(acme).json()["id"]
    assert second != first
    assert Message.objects.count() == 2


def test_purge_deletes_only_expired_records(acme):
    post(acme, key="old")
    post(acme, key="new")
    IdempotencyRecord.objects.filter(key="old").update(expires_at=timezone.now())
    assert idempotency_purge() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve"])
def test_a_malformed_key_is_refused(acme, key):
    assert_problem(post(acme, key=key), status=400, code="invalid_idempotency_key")
    assert not Message.objects.exists()


def test_a_batch_and_a_cancel_replay_too(acme):
    batch = post(acme, {"messages": [message_payload()] * 3}, url=f"{URL}/batch")
    assert post(acme, {"messages": [message_payload()] * 3}, url=f"{URL}/batch").json() == (
        batch.json()
    )
    assert Message.objects.count() == 3

    message_id = batch.json()["results"][0]["id"]
    cancel = post(acme, {}, key="cancel-1", url=f"{URL}/{message_id}/cancel")
    replay = post(acme, {}, key="cancel-1", url=f"{URL}/{message_id}/cancel")
    assert cancel.json()["cancelled"] == replay.json()["cancelled"] == ["ann@example.com"]


# -- at the same moment -------------------------------------------------------------------------


def in_parallel(requests: list) -> list:
    """Run the calls at once, each thread on its own database connection."""
    barrier = threading.Barrier(len(requests))
    responses: list = [None] * len(requests)

    def run(index: int, call) -> None:
        try:
            barrier.wait(timeout=10)
            responses[index] = call()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return responses


def client_for(actor) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {actor.key}", HTTP_IDEMPOTENCY_KEY="same-time")
    return api


def test_concurrent_requests_with_one_key_create_exactly_one_message(sink, acme):
    payload = message_payload(to=["ann@example.com"])
    calls = [lambda: client_for(acme).post(URL, payload, format="json") for _ in range(8)]

    responses = in_parallel(calls)

    assert [r.status_code for r in responses] == [202] * 8
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.has_header("Idempotent-Replayed") for r in responses) == 7
    assert Message.objects.count() == 1
    assert len(sink.wait_for(1)) == 1  # and it is delivered once


def test_concurrent_batches_with_one_key_create_the_batch_once(sink, acme):
    payload = {"messages": [message_payload(to=[f"u{i}@example.com"]) for i in range(20)]}
    calls = [lambda: client_for(acme).post(f"{URL}/batch", payload, format="json")] * 4

    responses = in_parallel(calls)

    assert [r.status_code for r in responses] == [202] * 4
    assert len({tuple(x["id"] for x in r.json()["results"]) for r in responses}) == 1
    assert Message.objects.count() == 20


def test_concurrent_different_requests_with_one_key_have_one_effect(sink, acme):
    calls = [
        lambda i=i: client_for(acme).post(URL, message_payload(subject=f"s{i}"), format="json")
        for i in range(6)
    ]

    responses = in_parallel(calls)

    assert sorted(r.status_code for r in responses) == [202] + [422] * 5
    assert Message.objects.count() == 1
