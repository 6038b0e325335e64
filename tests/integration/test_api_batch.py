"""POST /api/v1/messages/batch: each message validated on its own, the valid ones stored with
bulk inserts in one transaction, an answer per message in order."""

from __future__ import annotations

import pytest

from deliveries.models import Delivery, Event, Message, Template
from tests.builders import message_payload
from tests.integration.test_api_input import assert_field_error, assert_problem

pytestmark = pytest.mark.integration

URL = "/api/v1/messages/batch"


def post_batch(actor, messages, **extra):
    return actor.api.post(URL, {"messages": messages, **extra}, format="json")


def test_a_batch_of_valid_messages_is_accepted_with_an_id_each_in_order(acme):
    payloads = [message_payload(to=[f"user{i}@example.com"]) for i in range(5)]
    response = post_batch(acme, payloads)

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (5, 0)
    assert [r["index"] for r in body["results"]] == [0, 1, 2, 3, 4]
    for i, result in enumerate(body["results"]):
        message = Message.objects.get(id=result["id"], client=acme.client)
        assert result["status"] == "queued"
        assert message.deliveries.get().address == f"user{i}@example.com"


def test_valid_messages_are_accepted_even_when_others_fail_and_errors_name_their_fields(acme):
    response = post_batch(
        acme,
        [
            message_payload(to=["ok1@example.com"]),
            message_payload(to=["not-an-address"]),
            "not an object",
            message_payload(to=["ok2@example.com"], priority="urgent"),
            message_payload(to=["ok3@example.com"]),
        ],
    )

    assert response.status_code == 207, response.content
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 3)
    results = body["results"]
    assert [("id" in r, "error" in r) for r in results] == [
        (True, False),
        (False, True),
        (False, True),
        (False, True),
        (True, False),
    ]
    assert results[1]["error"]["code"] == "validation_error"
    assert results[1]["error"]["status"] == 400
    assert results[1]["error"]["errors"][0] == {
        "field": "to[0]",
        "code": "invalid_address",
        "message": results[1]["error"]["errors"][0]["message"],
    }
    assert results[2]["error"]["errors"][0]["field"] is None
    assert results[3]["error"]["errors"][0]["field"] == "priority"
    assert sorted(Delivery.objects.values_list("address", flat=True)) == [
        "ok1@example.com",
        "ok3@example.com",
    ]


def test_a_batch_in_which_every_message_fails_stores_nothing_and_answers_207(acme):
    response = post_batch(acme, [message_payload(to=["bad"]), message_payload(**{"from": "x"})])
    assert response.status_code == 207, response.content
    assert response.json()["accepted"] == 0
    assert not Message.objects.exists()


def test_a_batch_at_the_limit_is_accepted_and_one_more_message_refuses_the_whole_batch(
    acme, settings
):
    settings.MAILHUB_MAX_BATCH_MESSAGES = 500
    at_limit = post_batch(acme, [{}] * 500, defaults=message_payload())
    assert at_limit.status_code == 202, at_limit.content[:500]
    assert Message.objects.count() == 500

    over = post_batch(acme, [{}] * 501, defaults=message_payload())
    assert_field_error(over, field="messages", code="max_length")
    assert Message.objects.count() == 500


@pytest.mark.parametrize(
    ("payload", "field", "code"),
    [
        pytest.param({"messages": []}, "messages", "required", id="empty"),
        pytest.param({}, "messages", "required", id="missing"),
        pytest.param({"messages": {"a": 1}}, "messages", "not_a_list", id="not a list"),
        pytest.param(
            {"messages": [{}], "defaults": {"texte": "typo"}},
            "defaults",
            "unknown_field",
            id="unknown default",
        ),
        pytest.param({"messages": [{}], "extra": 1}, "extra", "unknown_field", id="unknown"),
    ],
)
def test_a_malformed_batch_is_refused_as_a_whole(acme, payload, field, code):
    assert_field_error(acme.api.post(URL, payload, format="json"), field=field, code=code)
    assert not Message.objects.exists()


def test_defaults_apply_to_every_message_and_context_metadata_and_headers_merge(acme):
    Template.objects.create(
        client=acme.client,
        name="welcome",
        subject="Hi {{ name }}",
        text="{{ greeting }} {{ name }}",
    )
    response = post_batch(
        acme,
        [
            {"to": ["ann@example.com"], "context": {"name": "Ann"}, "metadata": {"user": "1"}},
            {"to": ["bob@example.com"], "context": {"name": "Bob", "greeting": "Yo"}},
        ],
        defaults={
            "from": "no-reply@shop.test",
            "template": "welcome",
            "context": {"greeting": "Hello"},
            "metadata": {"campaign": "spring"},
            "tags": ["welcome"],
        },
    )
    assert response.status_code == 202, response.content
    ann, bob = (Message.objects.get(id=r["id"]) for r in response.json()["results"])
    assert (ann.subject, ann.text_body) == ("Hi Ann", "Hello Ann")
    assert (bob.subject, bob.text_body) == ("Hi Bob", "Yo Bob")
    assert ann.metadata == {"campaign": "spring", "user": "1"}
    assert bob.metadata == {"campaign": "spring"}
    assert ann.tags == bob.tags == ["welcome"]
    assert ann.template_name == "welcome"


def test_a_message_missing_a_template_variable_fails_alone(acme):
    Template.objects.create(client=acme.client, name="code", subject="Code", text="{{ code }}")
    response = post_batch(
        acme,
        [{"to": ["ann@example.com"], "context": {"code": "1"}}, {"to": ["bob@example.com"]}],
        defaults={"from": "no-reply@shop.test", "template": "code"},
    )
    assert response.status_code == 207, response.content
    error = response.json()["results"][1]["error"]
    assert error["errors"][0]["field"] == "context"
    assert error["errors"][0]["code"] == "missing_variable"
    assert Message.objects.get().text_body == "1"


def test_the_batch_is_written_with_a_constant_number_of_queries(
    acme, django_assert_max_num_queries
):
    """Bulk inserts: 200 messages cost the same few queries as 20 (validation reads none)."""

    def batch(n: int):
        return [message_payload(to=[f"u{i}@example.com", f"v{i}@example.com"]) for i in range(n)]

    # Authentication, rate limit, suppressions, then a COPY per table: no query per message.
    with django_assert_max_num_queries(20) as small:
        assert post_batch(acme, batch(20)).status_code == 202
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert post_batch(acme, batch(200)).status_code == 202
    assert Message.objects.count() == 220
    assert Event.objects.filter(type="accepted").count() == 440


def test_a_batch_counts_as_one_request_for_the_rate_limit(acme):
    acme.client.api_keys.update(rate_limit_per_minute=2)
    assert post_batch(acme, [message_payload()] * 10).status_code == 202
    assert post_batch(acme, [message_payload()] * 10).status_code == 202
    assert_problem(post_batch(acme, [message_payload()]), status=429, code="throttled")
    assert Message.objects.count() == 20
