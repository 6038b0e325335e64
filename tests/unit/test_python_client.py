"""The Python client's pure parts (clients/python): backoff, Retry-After, problems as exceptions,
pages, and one call's tries, the last with httpx's in-memory transport (no network, no
sleeping): which failures are tried again, with which Idempotency-Key, and when it gives up."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import mailhub_client
import pytest
from mailhub_client import (
    NO_RETRY,
    AsyncMailhub,
    Attachment,
    AuthenticationError,
    Conflict,
    IdempotencyKeyReused,
    Mailhub,
    MailhubError,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestTooLarge,
    RetryPolicy,
    ServerError,
    ServiceUnavailable,
    TransportError,
    ValidationError,
    _core,
)
from mailhub_client.errors import error_from_answer
from mailhub_client.retry import backoff, parse_retry_after
from rest_framework import serializers

from api.errors import _TITLES, problem, validation_problem
from tests.unit.test_import_arrows import imported_apps

BASE = "http://mailhub.test"
CLIENT_SOURCE = Path(mailhub_client.__file__).parent


# -- backoff and Retry-After ----------------------------------------------------------------------


def test_backoff_doubles_from_its_base_up_to_its_cap_at_the_top_of_its_jitter():
    ceilings = [backoff(n, base=0.5, cap=8, rng=lambda: 1.0) for n in range(1, 8)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_backoff_is_full_jitter_anywhere_from_zero_to_the_ceiling():
    assert backoff(3, base=0.5, cap=8, rng=lambda: 0.0) == 0.0
    assert backoff(3, base=0.5, cap=8, rng=lambda: 0.25) == 0.5
    assert backoff(10_000, base=0.5, cap=8, rng=lambda: 1.0) == 8.0  # no overflow


def test_a_policy_gives_up_after_its_attempts():
    policy = RetryPolicy(attempts=3)
    assert policy.delay(attempt=1, elapsed=0, rng=lambda: 1.0) == 0.5
    assert policy.delay(attempt=2, elapsed=0, rng=lambda: 1.0) == 1.0
    assert policy.delay(attempt=3, elapsed=0, rng=lambda: 1.0) is None
    assert NO_RETRY.delay(attempt=1, elapsed=0) is None


def test_a_policy_waits_what_retry_after_says_plus_at_most_a_tenth():
    policy = RetryPolicy()
    assert policy.delay(attempt=1, elapsed=0, retry_after=5, rng=lambda: 0.0) == 5
    assert policy.delay(attempt=1, elapsed=0, retry_after=5, rng=lambda: 1.0) == 5.5
    assert policy.delay(attempt=1, elapsed=0, retry_after=20, rng=lambda: 1.0) == 21  # 1 s most


def test_a_policy_gives_up_at_once_rather_than_wait_past_its_total_time():
    policy = RetryPolicy(max_elapsed=10)
    assert policy.delay(attempt=1, elapsed=4, retry_after=6, rng=lambda: 0.0) == 6
    assert policy.delay(attempt=1, elapsed=4.1, retry_after=6, rng=lambda: 0.0) is None
    assert policy.delay(attempt=1, elapsed=0, retry_after=103) is None


def test_a_policy_refuses_nonsense():
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(max_elapsed=-1)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), (" 3 ", 3.0), ("0", 0.0), ("1.5", 1.5), (None, None), ("", None)],
)
def test_retry_after_in_seconds(header, seconds):
    assert parse_retry_after(header) == seconds


@pytest.mark.parametrize("header", ["-1", "soon", "nan", "inf", "Mon, 99 Foo 2026 00:00:00 GMT"])
def test_an_unreadable_retry_after_is_none(header):
    assert parse_retry_after(header) is None


def test_retry_after_as_an_http_date_counts_from_now():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert later == "Thu, 01 Jan 2026 12:01:30 GMT"
    assert parse_retry_after(later, now=now) == 90.0
    assert parse_retry_after(earlier, now=now) == 0.0


# -- problems as exceptions -----------------------------------------------------------------------


def answer(body: dict, **headers: str) -> tuple[int, bytes, httpx.Headers]:
    return body["status"], json.dumps(body).encode(), httpx.Headers(headers)


def raised(body: dict, **headers: str) -> MailhubError:
    status, content, header_map = answer(body, **headers)
    return error_from_answer(status, content, headers=header_map)


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "parse_error", ValidationError),
        (401, "invalid_api_key", AuthenticationError),
        (403, "permission_denied", PermissionDenied),
        (404, "message_not_found", NotFound),
        (405, "method_not_allowed", MailhubError),
        (409, "template_exists", Conflict),
        (413, "request_too_large", RequestTooLarge),
        (415, "unsupported_media_type", MailhubError),
        (422, "idempotency_key_reused", IdempotencyKeyReused),
        (429, "throttled", RateLimited),
        (500, "internal_error", ServerError),
        (503, "database_unavailable", ServiceUnavailable),
    ],
)
def test_each_problem_of_the_api_raises_its_own_class(status, code, cls):
    error = raised(problem(status_code=status, code=code, detail="Why."))
    assert type(error) is cls
    assert (error.status, error.code, error.detail) == (status, code, "Why.")


def test_every_status_the_api_titles_has_a_class_or_the_base():
    for status in _TITLES:
        error = raised(problem(status_code=status, code="x", detail="d"))
        assert isinstance(error, MailhubError)
        assert isinstance(error, ServerError) == (status >= 500)


def test_a_validation_error_lists_the_fields_at_fault_as_the_api_flattens_them():
    detail = {
        "to": {0: [serializers.ErrorDetail("Not an address.", code="invalid_address")]},
        "subject": [serializers.ErrorDetail("Required.", code="required")],
    }
    error = raised(validation_problem(detail))

    assert isinstance(error, ValidationError)
    assert error.errors == [
        {"field": "to[0]", "code": "invalid_address", "message": "Not an address."},
        {"field": "subject", "code": "required", "message": "Required."},
    ]
    assert "to[0]: Not an address." in str(error)


def test_rate_limited_says_how_long_to_wait_from_the_body_or_the_header():
    body = problem(status_code=429, code="throttled", detail="Slow down.", retry_after=103)
    assert raised(body).retry_after == 103
    status, content, headers = answer(problem(status_code=429, code="throttled", detail="x"))
    assert error_from_answer(status, content, headers=headers, retry_after=7).retry_after == 7
    assert raised(problem(status_code=429, code="throttled", detail="x")).retry_after is None


def test_an_error_is_one_line_with_its_request_id():
    body = problem(status_code=500, code="internal_error", detail="Failed.", request_id="abc")
    assert str(raised(body)) == "500 internal_error: Failed. (request_id abc)"
    header_wins = raised(body, **{"X-Request-ID": "from-header"})
    assert header_wins.request_id == "from-header"


def test_an_answer_that_is_not_a_problem_gets_its_status_class_and_an_excerpt():
    page = b"<html><body><h1>502 Bad Gateway</h1>\n</body></html>"
    error = error_from_answer(502, page)
    assert type(error) is ServerError
    assert error.code == "http_502" and "502 Bad Gateway" in error.detail
    assert type(error_from_answer(503, b"")) is ServiceUnavailable
    assert error_from_answer(404, b"[1, 2]").code == "http_404"


# -- pages and encoding ----------------------------------------------------------------------------


def test_the_next_page_is_read_from_our_own_url_with_the_links_query():
    call = _core.events_list(
        mode="all",
        type=["bounced", "failed"],
        message=None,
        recipient=None,
        created_after=None,
        created_before=None,
        order="oldest",
        page_size=2,
    )
    assert call.params == (
        ("mode", "all"),
        ("type", "bounced"),
        ("type", "failed"),
        ("order", "oldest"),
        ("limit", "2"),
    )
    page = {
        "next": "http://10.0.0.7:8000/api/v1/events?mode=all&type=bounced%2Cfailed&cursor=WyIy"
        "&limit=2"
    }

    following = _core.next_page(call, page)

    assert following is not None and following.path == "events"
    assert following.params == (
        ("mode", "all"),
        ("type", "bounced,failed"),
        ("cursor", "WyIy"),
        ("limit", "2"),
    )
    assert _core.cursor_of(page) == "WyIy"
    assert _core.next_page(call, {"next": None, "results": []}) is None


def test_message_fields_leave_out_what_is_not_given_and_encode_attachments_and_times():
    message = _core.message_fields(
        sender="Shop <no-reply@shop.test>",
        to="ann@example.com",
        cc=None,
        bcc=(),
        reply_to=None,
        subject="Hi",
        text="Hello",
        html=None,
        headers=None,
        priority="high",
        unsubscribe=False,
        send_at=datetime(2026, 1, 1, 12, tzinfo=UTC),
        tags=("a",),
        metadata=None,
        attachments=[Attachment("logo.png", b"\x89PNG", content_id="logo@shop")],
        template=None,
        context=None,
    )
    sent = json.loads(_core.encode_json(message))
    assert sent == {
        "from": "Shop <no-reply@shop.test>",
        "to": ["ann@example.com"],
        "bcc": [],
        "subject": "Hi",
        "text": "Hello",
        "priority": "high",
        "unsubscribe": False,
        "send_at": "2026-01-01T12:00:00+00:00",
        "tags": ["a"],
        "attachments": [
            {
                "filename": "logo.png",
                "content_type": "image/png",
                "content": "iVBORw==",
                "disposition": "inline",
                "content_id": "logo@shop",
            }
        ],
    }


def test_path_segments_are_escaped_but_addresses_keep_their_at():
    assert _core.suppression_get("a+b@example.com").path == "suppressions/a%2Bb@example.com"
    assert _core.template_get("../admin").path == "templates/..%2Fadmin"


# -- one call's tries, on an in-memory transport ---------------------------------------------------


class Script:
    """Answers requests in order from a script: a status (with its problem), or an exception."""

    def __init__(self, *steps: int | type[httpx.TransportError] | tuple[int, dict[str, str]]):
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, type):
            raise step("scripted failure", request=request)
        status, headers = step if isinstance(step, tuple) else (step, {})
        if status == 204:
            return httpx.Response(204, headers=headers)
        if status < 300:
            return httpx.Response(status, json={"id": "m1", "status": "queued"}, headers=headers)
        body = problem(status_code=status, code=f"code_{status}", detail="scripted")
        return httpx.Response(status, json=body, headers=headers)

    @property
    def keys(self) -> list[str | None]:
        return [request.headers.get("Idempotency-Key") for request in self.requests]


def sync_client(script: Script, sleeps: list[float], **options) -> Mailhub:
    mailhub = Mailhub(
        BASE, "mh_test", http_client=httpx.Client(transport=httpx.MockTransport(script)), **options
    )
    mailhub._sleep = sleeps.append  # type: ignore[assignment]  # no sleeping in unit tests
    return mailhub


def send(mailhub: Mailhub, **options):
    return mailhub.send(sender="a@shop.test", to=["b@example.com"], text="t", **options)


def test_a_send_repeats_its_own_idempotency_key_on_every_try():
    script, sleeps = Script(503, httpx.ReadTimeout, (429, {"Retry-After": "2"}), 202), []

    accepted = send(sync_client(script, sleeps))

    assert accepted == {"id": "m1", "status": "queued"}
    assert len(script.requests) == 4
    assert len(set(script.keys)) == 1 and script.keys[0]
    assert 2 <= sleeps[2] <= 2.2  # Retry-After, honoured
    assert script.requests[0].headers["Authorization"] == "Bearer mh_test"
    assert script.requests[0].url == f"{BASE}/api/v1/messages"


def test_two_sends_have_two_keys_and_a_key_given_is_the_one_sent():
    script, sleeps = Script(202, 202, 202), []
    mailhub = sync_client(script, sleeps)
    send(mailhub)
    send(mailhub)
    send(mailhub, idempotency_key="order-42")
    assert script.keys[0] != script.keys[1] and script.keys[2] == "order-42"


def test_reads_carry_no_idempotency_key_and_are_retried_after_a_dropped_connection():
    script, sleeps = Script(httpx.RemoteProtocolError, 200), []
    assert sync_client(script, sleeps).get("m1") == {"id": "m1", "status": "queued"}
    assert script.keys == [None, None] and len(sleeps) == 1


def test_a_webhook_create_is_retried_only_when_it_surely_did_not_arrive():
    refused, sleeps = Script(httpx.ConnectError, 429, 201), []
    sync_client(refused, sleeps).webhooks.create("https://hooks.example/x")
    assert len(refused.requests) == 3

    for ambiguous in (503, httpx.ReadTimeout):
        script = Script(ambiguous, 201)
        with pytest.raises(MailhubError):
            sync_client(script, sleeps).webhooks.create("https://hooks.example/x")
        assert len(script.requests) == 1


def test_a_delete_that_finds_nothing_after_an_ambiguous_try_has_succeeded():
    script, sleeps = Script(503, 404), []
    assert sync_client(script, sleeps).templates.delete("welcome") is None
    with pytest.raises(NotFound):
        sync_client(Script(404), sleeps).templates.delete("welcome")


def test_it_gives_up_after_its_attempts_with_the_last_answer():
    script, sleeps = Script(503, 503, 503), []
    with pytest.raises(ServiceUnavailable):
        send(sync_client(script, sleeps, retry=RetryPolicy(attempts=3)))
    assert len(script.requests) == 3 and len(sleeps) == 2


def test_it_gives_up_at_once_when_mailhub_asks_to_wait_beyond_the_budget():
    script, sleeps = Script((429, {"Retry-After": "103"})), []
    with pytest.raises(RateLimited) as limited:
        send(sync_client(script, sleeps))
    assert limited.value.retry_after == 103 and sleeps == []


def test_no_answer_at_all_is_a_transport_error_caused_by_httpx():
    script, sleeps = Script(*[httpx.ConnectError] * 4), []
    with pytest.raises(TransportError) as failed:
        send(sync_client(script, sleeps))
    assert isinstance(failed.value.__cause__, httpx.ConnectError)
    assert failed.value.status is None and "4 attempt(s)" in str(failed.value)


def test_errors_that_a_retry_cannot_mend_are_raised_at_once():
    for status in (400, 401, 404, 409, 422, 500):
        script = Script(status)
        with pytest.raises(MailhubError):
            send(sync_client(script, []))
        assert len(script.requests) == 1


def test_the_async_client_shares_the_core():
    script, sleeps = Script(503, 202), []

    async def main() -> dict:
        http = httpx.AsyncClient(transport=httpx.MockTransport(script))
        async with AsyncMailhub(BASE, "mh_test", http_client=http) as mailhub:

            async def no_sleep(seconds: float) -> None:
                sleeps.append(seconds)

            mailhub._sleep = no_sleep  # type: ignore[method-assign]  # no sleeping here either
            accepted = await mailhub.send(sender="a@shop.test", to=["b@example.com"], text="t")
        await http.aclose()
        return dict(accepted)

    assert asyncio.run(main()) == {"id": "m1", "status": "queued"}
    assert len(script.requests) == 2 and script.keys[0] == script.keys[1]


def test_a_client_wants_an_http_url_and_a_key():
    with pytest.raises(ValueError, match="http"):
        Mailhub("mailhub.example.com", "mh_x")
    with pytest.raises(ValueError, match="API key"):
        Mailhub(BASE, "")


# -- the package stands alone ----------------------------------------------------------------------


def test_the_client_imports_nothing_of_mailhubs_own_code():
    for path in CLIENT_SOURCE.rglob("*.py"):
        assert imported_apps(path.read_text()) == [], path


def test_the_client_is_typed_for_its_users():
    assert (CLIENT_SOURCE / "py.typed").exists()
