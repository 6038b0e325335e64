"""The message endpoints beyond a plain send: scheduling, attachments, tags and metadata, listing
with filters and cursors, history, cancel — against the real Postgres, each client alone."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from deliveries.models import Attachment, Delivery, Event, Message, Template
from deliveries.services import suppression_add
from tests.builders import message_payload
from tests.integration.test_api_input import assert_field_error, assert_problem

pytestmark = pytest.mark.integration

URL = "/api/v1/messages"


def send(actor, **overrides) -> dict:
    response = actor.api.post(URL, message_payload(**overrides), format="json")
    assert response.status_code == 202, response.content
    return response.json()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def later(**delta) -> str:
    return (timezone.now() + timedelta(**delta)).isoformat()


# -- scheduling ---------------------------------------------------------------------------------


def test_a_message_with_send_at_waits_scheduled_until_then(acme):
    send_at = timezone.now() + timedelta(hours=2)
    body = send(acme, send_at=send_at.isoformat(), to=["ann@example.com", "bob@example.com"])

    assert body["status"] == "scheduled"
    message = Message.objects.get(id=body["id"])
    assert message.send_at == send_at
    assert set(message.deliveries.values_list("status", "next_attempt_at")) == {
        ("scheduled", send_at)
    }
    assert Event.objects.filter(message=message, type="scheduled").count() == 2


@pytest.mark.parametrize(
    ("send_at", "code"),
    [
        pytest.param(lambda: later(seconds=-1), "in_past", id="a second ago"),
        pytest.param(lambda: later(days=30, minutes=1), "too_far", id="past 30 days"),
        pytest.param(lambda: "tomorrow", "invalid", id="not ISO 8601"),
    ],
)
def test_a_send_at_in_the_past_or_beyond_the_horizon_is_refused(acme, send_at, code):
    response = acme.api.post(URL, message_payload(send_at=send_at()), format="json")
    assert_field_error(response, field="send_at", code=code)
    assert not Message.objects.exists()


def test_a_send_at_just_inside_the_horizon_is_accepted_and_the_horizon_is_a_setting(acme, settings):
    assert send(acme, send_at=later(days=30, minutes=-1))["status"] == "scheduled"
    settings.MAILHUB_MAX_SCHEDULE_DAYS = 1
    response = acme.api.post(URL, message_payload(send_at=later(days=1, minutes=1)), format="json")
    assert_field_error(response, field="send_at", code="too_far")


def test_a_send_at_without_an_offset_is_taken_as_utc(acme):
    naive = (timezone.now() + timedelta(hours=1)).replace(tzinfo=None, microsecond=0)
    body = send(acme, send_at=naive.isoformat())
    assert Message.objects.get(id=body["id"]).send_at == naive.replace(tzinfo=UTC)


# -- attachments --------------------------------------------------------------------------------


def test_attachments_and_inline_images_are_stored_and_listed_without_their_content(acme):
    pdf, png = b"%PDF-1.4 invoice", b"\x89PNG\r\n\x1a\nlogo"
    body = send(
        acme,
        html='<p><img src="cid:logo@shop"></p>',
        attachments=[
            {"filename": "invoice.pdf", "content_type": "application/pdf", "content": b64(pdf)},
            {
                "filename": "logo.png",
                "content_type": "image/png",
                "content": b64(png),
                "disposition": "inline",
                "content_id": "logo@shop",
            },
        ],
    )
    stored = {a.filename: a for a in Attachment.objects.filter(message_id=body["id"])}
    assert bytes(stored["invoice.pdf"].content) == pdf
    assert (stored["logo.png"].content_id, bytes(stored["logo.png"].content)) == ("logo@shop", png)

    detail = acme.api.get(f"{URL}/{body['id']}").json()
    assert detail["attachments"] == [
        {
            "filename": "invoice.pdf",
            "content_type": "application/pdf",
            "size": 16,
            "content_id": "",
        },
        {
            "filename": "logo.png",
            "content_type": "image/png",
            "size": 12,
            "content_id": "logo@shop",
        },
    ]


def attachment(size: int, name: str = "a.bin") -> dict:
    return {
        "filename": name,
        "content_type": "application/octet-stream",
        "content": b64(b"x" * size),
    }


def test_an_attachment_at_the_size_limit_is_accepted_and_one_byte_more_is_refused(acme, settings):
    settings.MAILHUB_MAX_ATTACHMENT_BYTES = 100
    assert send(acme, attachments=[attachment(100)])
    response = acme.api.post(URL, message_payload(attachments=[attachment(101)]), format="json")
    assert_field_error(response, field="attachments[0].content", code="max_size")
    assert Message.objects.count() == 1


def test_attachments_at_the_total_limit_are_accepted_and_one_byte_more_is_refused(acme, settings):
    settings.MAILHUB_MAX_ATTACHMENTS_BYTES = 150
    assert send(acme, attachments=[attachment(100), attachment(50)])
    over = message_payload(attachments=[attachment(100), attachment(51)])
    assert_field_error(
        acme.api.post(URL, over, format="json"), field="attachments", code="max_size"
    )
    assert Message.objects.count() == 1


def test_attachments_at_the_count_limit_are_accepted_and_one_more_is_refused(acme, settings):
    settings.MAILHUB_MAX_ATTACHMENTS = 3
    assert send(acme, attachments=[attachment(1)] * 3)
    over = message_payload(attachments=[attachment(1)] * 4)
    assert_field_error(
        acme.api.post(URL, over, format="json"), field="attachments", code="max_length"
    )
    assert Message.objects.count() == 1


@pytest.mark.parametrize(
    ("part", "field", "code"),
    [
        pytest.param({"content": "not base64!"}, "content", "invalid_base64", id="bad base64"),
        pytest.param({"content_type": "pdf"}, "content_type", "invalid_content_type", id="type"),
        pytest.param(
            {"content_type": "multipart/mixed"},
            "content_type",
            "invalid_content_type",
            id="multipart",
        ),
        pytest.param({"filename": "../etc/passwd"}, "filename", "invalid_filename", id="path"),
        pytest.param({"filename": "a\r\nb.txt"}, "filename", "line_break", id="CRLF name"),
        pytest.param({"disposition": "inline"}, "content_id", "required", id="inline, no cid"),
        pytest.param({"content_id": "x@y"}, "content_id", "invalid", id="cid, not inline"),
        pytest.param({"extra": 1}, "extra", "unknown_field", id="unknown field"),
    ],
)
def test_a_bad_attachment_is_refused_on_its_field(acme, part, field, code):
    payload = message_payload(attachments=[{**attachment(3), **part}])
    response = acme.api.post(URL, payload, format="json")
    assert_field_error(response, field=f"attachments[0].{field}", code=code)
    assert not Message.objects.exists()


def test_base64_with_line_breaks_as_mime_writes_it_is_accepted(acme):
    data = bytes(range(256)) * 3
    wrapped = "\r\n".join(b64(data)[i : i + 76] for i in range(0, len(b64(data)), 76))
    body = send(acme, attachments=[{**attachment(0), "content": wrapped}])
    assert bytes(Attachment.objects.get(message_id=body["id"]).content) == data


# -- tags and metadata ----------------------------------------------------------------------------


def test_tags_and_metadata_are_stored_and_returned(acme):
    body = send(acme, tags=["signup", "eu", "signup"], metadata={"user": "42", "plan": 7})
    detail = acme.api.get(f"{URL}/{body['id']}").json()
    assert detail["tags"] == ["signup", "eu"]  # duplicates dropped, order kept
    assert detail["metadata"] == {"user": "42", "plan": "7"}


@pytest.mark.parametrize(
    ("overrides", "field", "code"),
    [
        pytest.param({"tags": ["x" * 65]}, "tags[0]", "max_length", id="long tag"),
        pytest.param({"tags": ["a\nb"]}, "tags", "invalid_tag", id="control char in tag"),
        pytest.param({"metadata": {"bad key": "1"}}, "metadata.bad key", "invalid_key", id="key"),
        pytest.param({"metadata": {"k": {"nested": 1}}}, "metadata.k", "invalid", id="nested"),
        pytest.param({"metadata": ["a"]}, "metadata", "not_a_dict", id="not an object"),
    ],
)
def test_bad_tags_or_metadata_are_refused(acme, overrides, field, code):
    response = acme.api.post(URL, message_payload(**overrides), format="json")
    assert_field_error(response, field=field, code=code)


def test_tag_and_metadata_limits_hold_at_their_bound_and_refuse_past_it(acme, settings):
    settings.MAILHUB_MAX_TAGS = 2
    settings.MAILHUB_MAX_METADATA_KEYS = 2
    settings.MAILHUB_MAX_METADATA_BYTES = 30
    assert send(acme, tags=["a", "b"], metadata={"k": "v", "l": "w"})
    assert send(acme, metadata={"k": "v" * 22})  # {"k":"vv...v"}: 30 bytes
    cases = [
        ({"tags": ["a", "b", "c"]}, "tags", "max_length"),
        ({"metadata": {"k": "v", "l": "w", "m": "x"}}, "metadata", "max_length"),
        ({"metadata": {"k": "v" * 23}}, "metadata", "max_size"),
    ]
    for overrides, field, code in cases:
        response = acme.api.post(URL, message_payload(**overrides), format="json")
        assert_field_error(response, field=field, code=code)
    assert Message.objects.count() == 2


# -- listing ------------------------------------------------------------------------------------


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [m["id"] for m in response.json()["results"]]


def test_the_list_is_newest_first_and_shows_only_the_clients_own_messages(acme, globex):
    first = send(acme)["id"]
    second = send(acme)["id"]
    send(globex)
    assert ids(acme.api.get(URL)) == [second, first]
    listed = acme.api.get(URL).json()["results"][0]
    assert listed["recipients"] == [
        {"address": "ann@example.com", "kind": "to", "status": "queued"}
    ]


def test_the_list_filters_by_status_recipient_tag_metadata_priority_and_time(acme):
    plain = send(acme, to=["ann@example.com"])["id"]
    tagged = send(acme, to=["Bob <BOB@example.com>"], tags=["signup", "eu"], priority="high")["id"]
    meta = send(acme, metadata={"order": "A-1"}, priority="low")["id"]
    suppression_add(client_id=acme.client.id, address="cy@example.com", reason="manual")
    suppressed = send(acme, to=["cy@example.com"])["id"]
    Message.objects.filter(id=plain).update(created_at=timezone.now() - timedelta(days=2))

    assert ids(acme.api.get(URL, {"status": "suppressed"})) == [suppressed]
    assert set(ids(acme.api.get(URL, {"status": "suppressed,queued"}))) == set(
        ids(acme.api.get(URL, {"status": ["suppressed", "queued"]}))
    )
    assert set(ids(acme.api.get(URL, {"status": ["suppressed", "queued"]}))) == {
        plain,
        tagged,
        meta,
        suppressed,
    }
    assert ids(acme.api.get(URL, {"recipient": "bob@EXAMPLE.com"})) == [tagged]
    assert ids(acme.api.get(URL, {"tag": "eu"})) == [tagged]
    assert ids(acme.api.get(URL, {"tag": ["eu", "signup"]})) == [tagged]
    assert ids(acme.api.get(URL, {"tag": ["eu", "other"]})) == []
    assert ids(acme.api.get(URL, {"metadata": "order:A-1"})) == [meta]
    assert ids(acme.api.get(URL, {"priority": "high"})) == [tagged]
    yesterday = (timezone.now() - timedelta(days=1)).isoformat()
    assert ids(acme.api.get(URL, {"created_before": yesterday})) == [plain]
    assert plain not in ids(acme.api.get(URL, {"created_after": yesterday}))


@pytest.mark.parametrize(
    ("query", "field", "code"),
    [
        ({"status": "lost"}, "status[0]", "invalid_choice"),
        ({"created_after": "yesterday"}, "created_after", "invalid"),
        ({"metadata": "no-colon"}, "metadata[0]", "invalid_metadata_filter"),
        ({"recipient": "not-an-address"}, "recipient", "invalid"),
        ({"cursor": "garbage"}, "cursor", "invalid_cursor"),
        ({"cursor": base64.b64encode(b"p=not-a-time").decode()}, "cursor", "invalid_cursor"),
    ],
)
def test_a_bad_filter_or_cursor_is_a_400_naming_it(acme, query, field, code):
    assert_field_error(acme.api.get(URL, query), field=field, code=code)


def test_cursor_pages_walk_every_message_once_even_within_one_batch(acme):
    batch = acme.api.post(
        f"{URL}/batch",
        {"defaults": message_payload(), "messages": [{} for _ in range(7)]},
        format="json",
    )
    assert batch.status_code == 202, batch.content
    created = {r["id"] for r in batch.json()["results"]}
    seen, url, pages = [], URL + "?limit=3", 0
    while url:
        response = acme.api.get(url)
        seen += ids(response)
        url, pages = response.json()["next"], pages + 1
    assert pages == 3
    assert len(seen) == 7 and set(seen) == created  # all share one created_at


# -- history and cancel -------------------------------------------------------------------------


def test_the_history_lists_each_recipients_events_oldest_first(acme):
    suppression_add(client_id=acme.client.id, address="bob@example.com", reason="manual")
    body = send(acme, to=["ann@example.com", "bob@example.com"], send_at=later(hours=1))
    acme.api.post(f"{URL}/{body['id']}/cancel")

    response = acme.api.get(f"{URL}/{body['id']}/events")
    assert response.status_code == 200, response.content
    events = [(e["type"], e["recipient"]) for e in response.json()["results"]]
    assert events == [
        ("scheduled", "ann@example.com"),
        ("suppressed", "bob@example.com"),
        ("cancelled", "ann@example.com"),
    ]


def test_cancel_stops_a_scheduled_message_and_says_what_it_cancelled(acme):
    body = send(acme, to=["ann@example.com", "bob@example.com"], send_at=later(hours=1))

    response = acme.api.post(f"{URL}/{body['id']}/cancel")

    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["status"] == "cancelled"
    assert sorted(answer["cancelled"]) == ["ann@example.com", "bob@example.com"]
    assert set(Delivery.objects.filter(message_id=body["id"]).values_list("status", flat=True)) == {
        "cancelled"
    }
    again = acme.api.post(f"{URL}/{body['id']}/cancel").json()
    assert (again["status"], again["cancelled"]) == ("cancelled", [])


def test_cancel_leaves_delivered_recipients_alone(acme):
    body = send(acme, to=["ann@example.com", "bob@example.com"])
    Delivery.objects.filter(message_id=body["id"], address="ann@example.com").update(
        status="delivered", next_attempt_at=None
    )
    answer = acme.api.post(f"{URL}/{body['id']}/cancel").json()
    assert answer["cancelled"] == ["bob@example.com"]
    assert answer["status"] == "partially_delivered"


@pytest.mark.parametrize("suffix", ["", "/events", "/cancel"])
def test_another_client_gets_404_for_a_message_and_cannot_cancel_it(acme, globex, suffix):
    body = send(acme, send_at=later(hours=1))
    call = globex.api.post if suffix == "/cancel" else globex.api.get
    assert_problem(call(f"{URL}/{body['id']}{suffix}"), status=404, code="message_not_found")
    assert_problem(call(f"{URL}/{uuid.uuid4()}{suffix}"), status=404, code="message_not_found")
    assert Message.objects.get(id=body["id"]).status == "scheduled"


def test_a_malformed_id_under_the_api_is_a_problem_not_an_html_page(acme):
    response = acme.api.get(f"{URL}/not-a-uuid")
    assert_problem(response, status=404, code="not_found")


# -- malformed bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [33, 100_000])
def test_json_nested_too_deeply_is_a_parse_error_not_a_crash(acme, depth):
    body = "[" * depth + "]" * depth
    response = acme.api.post(URL, data=body, content_type="application/json")
    assert_problem(response, status=400, code="parse_error")


def test_a_template_context_as_deep_as_allowed_renders_and_one_level_more_is_refused(acme):
    Template.objects.create(client=acme.client, name="deep", subject="s", text="{{ x }}")

    def payload(levels: int) -> dict:
        nested: dict = {}
        for _ in range(levels):
            nested = {"n": nested}
        body = message_payload(template="deep", context={"x": "ok", "nested": nested})
        del body["subject"], body["text"]
        return body

    # payload, context, nested and 29 more objects: 32 levels, the most MAX_DEPTH allows.
    assert acme.api.post(URL, payload(29), format="json").status_code == 202
    assert_problem(acme.api.post(URL, payload(30), format="json"), status=400, code="parse_error")
