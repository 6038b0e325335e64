"""The Python client (clients/python) against a real running Mailhub: Django's live server on the
test database, the real Celery workers delivering to the SMTP sink, a webhook worker POSTing
to a receiver on loopback. Retries meet a real 429 (the key's own rate limit) and a real 503
(the database refusing connections), and the Idempotency-Key makes one message of each send.
A test-mode key's mail is settled by the simulator in the same workers, and listed apart."""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.db import connection
from mailhub_client import (
    FINAL_MESSAGE_STATUSES,
    AsyncMailhub,
    Attachment,
    AuthenticationError,
    Conflict,
    IdempotencyKeyReused,
    Mailhub,
    NotFound,
    ValidationError,
)
from mailhub_client.webhooks import SIGNATURE_HEADER, events, verify

from accounts.models import ApiKey, RateCounter
from accounts.rate_limit import WINDOW_SECONDS
from accounts.services import api_key_create, api_key_set_rate_limit
from deliveries.models import Message
from deliveries.simulator import SIMULATOR_DOMAIN
from tests.builders import Actor
from tests.integration import test_webhooks_stack
from tests.integration.conftest import wait_until, wait_until_final
from tests.support.receiver import WebhookReceiver
from tests.support.workers import ROOT

pytestmark = pytest.mark.integration

SHOP = "Shop <no-reply@shop.test>"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8


# The webhook worker and the receiver of the webhook stack's tests, for this module too.
webhooks_worker = test_webhooks_stack.webhooks_worker
receiver = test_webhooks_stack.receiver


class Recorder:
    """An httpx client's event hooks: every request and status the Mailhub client sent and got."""

    def __init__(self, on_response: Callable[[httpx.Response], None] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.statuses: list[int] = []
        self.refusals: list[tuple[str, str | None]] = []  # (problem code, Retry-After)
        self._on_response = on_response

    def http_client(self) -> httpx.Client:
        return httpx.Client(
            timeout=30, event_hooks={"request": [self.requests.append], "response": [self._got]}
        )

    def _got(self, response: httpx.Response) -> None:
        self.statuses.append(response.status_code)
        if response.status_code >= 400:
            response.read()
            self.refusals.append((response.json()["code"], response.headers.get("Retry-After")))
        if self._on_response is not None:
            self._on_response(response)

    @property
    def keys(self) -> list[str | None]:
        return [request.headers.get("Idempotency-Key") for request in self.requests]


@pytest.fixture
def mailhub(sink, live_server, acme: Actor) -> Iterator[Mailhub]:
    with Mailhub(live_server.url, acme.key) as client:
        yield client


def until_final(mailhub: Mailhub, message_id: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = mailhub.get(message_id)
        if message["status"] in FINAL_MESSAGE_STATUSES:
            return dict(message)
        assert time.monotonic() < deadline, f"message {message_id} still {message['status']}"
        time.sleep(0.1)


# -- sending and reading ------------------------------------------------------------------------


def test_a_message_sent_with_the_client_is_delivered_by_the_worker_and_read_back(mailhub, sink):
    accepted = mailhub.send(
        sender=SHOP,
        to=["ann@example.com"],
        subject="Your invoice",
        text="Attached.",
        html='<p>Invoice <img src="cid:logo@shop.test"></p>',
        headers={"X-Invoice": "7"},
        priority="high",
        tags=["invoice"],
        metadata={"order": "A-1"},
        attachments=[
            Attachment("invoice.pdf", PDF),
            Attachment("logo.png", PNG, content_id="logo@shop.test"),
        ],
    )
    assert accepted["status"] == "queued"

    message = until_final(mailhub, accepted["id"])

    assert message["status"] == "delivered" and message["priority"] == "high"
    assert message["tags"] == ["invoice"] and message["metadata"] == {"order": "A-1"}
    assert [(a["filename"], a["size"]) for a in message["attachments"]] == [
        ("invoice.pdf", len(PDF)),
        ("logo.png", len(PNG)),
    ]
    assert message["recipients"][0]["attempts"][0]["smtp_code"] == 250
    [received] = sink.wait_for(1)
    parts = {part.get_filename(): part for part in received.parsed.walk() if part.get_filename()}
    assert parts["invoice.pdf"].get_payload(decode=True) == PDF
    assert parts["logo.png"]["Content-ID"] == "<logo@shop.test>"
    assert received.parsed["X-Invoice"] == "7"
    history = mailhub.message_events(accepted["id"])
    assert [event["type"] for event in history] == ["accepted", "delivered"]


def test_a_batch_reports_each_message_and_the_accepted_ones_are_delivered(mailhub, sink):
    result = mailhub.send_batch(
        [
            {"to": ["ann@example.com"], "subject": "One"},
            {"to": ["not an address"], "subject": "Two"},
            {"to": ["bob@example.com"], "subject": "Three", "priority": "low"},
        ],
        defaults={"from": SHOP, "text": "Hello.", "tags": ["batch"]},
    )

    assert (result["accepted"], result["rejected"]) == (2, 1)
    first, refused, third = result["results"]
    assert refused["error"]["errors"][0]["field"] == "to[0]"
    for item in (first, third):
        assert until_final(mailhub, item["id"])["status"] == "delivered"
    assert sorted(r.rcpt_tos[0] for r in sink.wait_for(2)) == ["ann@example.com", "bob@example.com"]
    tagged = list(mailhub.messages(tag=["batch"], page_size=1))
    assert sorted(m["id"] for m in tagged) == sorted([first["id"], third["id"]])


def test_a_scheduled_message_is_cancelled_and_never_sent(mailhub, sink):
    accepted = mailhub.send(
        sender=SHOP,
        to=["ann@example.com"],
        subject="Later",
        text="Not yet.",
        send_at=datetime.now(UTC) + timedelta(hours=1),
    )
    assert accepted["status"] == "scheduled"

    cancelled = mailhub.cancel(accepted["id"])

    assert cancelled["status"] == "cancelled" and cancelled["cancelled"] == ["ann@example.com"]
    assert mailhub.cancel(accepted["id"])["cancelled"] == []  # a new key: a real second cancel
    assert mailhub.get(accepted["id"])["status"] == "cancelled"
    assert sink.received == []


def test_templates_are_created_read_changed_listed_used_and_deleted(mailhub, sink):
    created = mailhub.templates.create(
        "welcome", subject="Welcome, {{ name }}", text="Hello {{ name }}, code {{ code }}."
    )
    assert created["name"] == "welcome"
    with pytest.raises(Conflict) as taken:
        mailhub.templates.create("welcome", subject="x", text="y")
    assert taken.value.code == "template_exists"

    changed = mailhub.templates.update("welcome", subject="Hi {{ name }}")
    assert changed["subject"] == "Hi {{ name }}"
    mailhub.templates.create("goodbye", subject="Bye", text="Bye.")
    assert [t["name"] for t in mailhub.templates.list(page_size=1)] == ["goodbye", "welcome"]
    assert mailhub.templates.get("welcome")["text"] == "Hello {{ name }}, code {{ code }}."

    accepted = mailhub.send(
        sender=SHOP, to=["ann@example.com"], template="welcome", context={"name": "Ann", "code": 7}
    )
    assert until_final(mailhub, accepted["id"])["status"] == "delivered"
    [received] = sink.wait_for(1)
    assert received.parsed["Subject"] == "Hi Ann"

    with pytest.raises(ValidationError) as missing:
        mailhub.send(sender=SHOP, to=["ann@example.com"], template="welcome", context={})
    assert missing.value.errors[0]["code"] == "missing_variable"

    mailhub.templates.delete("welcome")
    with pytest.raises(NotFound):
        mailhub.templates.get("welcome")


def test_suppressions_are_added_listed_honoured_and_removed(mailhub, sink):
    added = mailhub.suppressions.add("Bob+news@Example.com", reason="unsubscribe", detail="footer")
    assert added["address"] == "bob+news@example.com" and added["reason"] == "unsubscribe"
    mailhub.suppressions.add("carol@example.com")
    assert mailhub.suppressions.add("carol@example.com", reason="complaint")["reason"] == "manual"

    assert {s["address"] for s in mailhub.suppressions.list(page_size=1)} == {
        "bob+news@example.com",
        "carol@example.com",
    }
    assert [s["address"] for s in mailhub.suppressions.list(reason=["unsubscribe"])] == [
        "bob+news@example.com"
    ]
    assert mailhub.suppressions.get("bob+news@example.com")["detail"] == "footer"

    accepted = mailhub.send(sender=SHOP, to=["bob+news@example.com"], subject="s", text="t")
    assert until_final(mailhub, accepted["id"])["status"] == "suppressed"

    mailhub.suppressions.remove("bob+news@example.com")
    with pytest.raises(NotFound):
        mailhub.suppressions.get("bob+news@example.com")
    with pytest.raises(NotFound):
        mailhub.suppressions.remove("bob+news@example.com")
    assert sink.received == []


def test_the_event_log_is_read_page_by_page_and_resumed_from_a_cursor(mailhub, sink):
    ids = [
        mailhub.send(sender=SHOP, to=[f"r{i}@example.com"], subject="s", text="t")["id"]
        for i in range(2)
    ]
    for message_id in ids:
        until_final(mailhub, message_id)

    oldest_first = list(mailhub.events(order="oldest", page_size=1))

    assert sorted((e["message_id"], e["type"]) for e in oldest_first) == sorted(
        (message_id, kind) for message_id in ids for kind in ("accepted", "delivered")
    )
    times = [e["created_at"] for e in oldest_first]
    assert times == sorted(times)
    assert list(mailhub.events()) == oldest_first[::-1]  # newest first by default
    delivered = list(mailhub.events(type=["delivered"], message=ids[1]))
    assert [(e["type"], e["recipient"]) for e in delivered] == [("delivered", "r1@example.com")]

    first = mailhub.events_page(order="oldest", page_size=3)
    assert len(first.results) == 3 and first.cursor
    rest = mailhub.events_page(order="oldest", page_size=3, cursor=first.cursor)
    assert [e["id"] for e in first.results + rest.results] == [e["id"] for e in oldest_first]
    assert rest.cursor is None


# -- webhooks -----------------------------------------------------------------------------------


def test_webhook_endpoints_are_created_read_changed_listed_and_deleted(mailhub, settings):
    settings.MAILHUB_WEBHOOK_ALLOW_HTTP = True
    settings.MAILHUB_WEBHOOK_ALLOW_LOOPBACK = True
    created = mailhub.webhooks.create(
        "http://127.0.0.1:9/hooks", event_types=["failed", "bounced"], description="shop"
    )
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["bounced", "failed"]

    changed = mailhub.webhooks.update(created["id"], enabled=False, description="paused")
    assert (changed["enabled"], changed["description"]) == (False, "paused")
    assert mailhub.webhooks.get(created["id"])["url"] == "http://127.0.0.1:9/hooks"
    assert [w["id"] for w in mailhub.webhooks.list()] == [created["id"]]
    assert "secret" not in mailhub.webhooks.list()[0]
    assert list(mailhub.webhooks.attempts(created["id"])) == []

    mailhub.webhooks.delete(created["id"])
    with pytest.raises(NotFound):
        mailhub.webhooks.get(created["id"])
    with pytest.raises(ValidationError) as refused:
        mailhub.webhooks.create("http://10.0.0.1/hooks")
    assert refused.value.code == "webhook_url_refused"


def test_a_webhook_request_passes_the_clients_signature_check(
    mailhub, sink, receiver: WebhookReceiver
):
    created = mailhub.webhooks.create(receiver.url, event_types=["delivered"])
    receiver.secret = created["secret"]
    accepted = mailhub.send(sender=SHOP, to=["ann@example.com"], subject="s", text="t")

    receiver.wait_until(lambda r: len(r.events()) >= 1, what="the delivered event")

    request = receiver.requests[0]
    header = request.headers[SIGNATURE_HEADER]
    assert verify(created["secret"], request.body, header)
    assert not verify(created["secret"], request.body + b" ", header)
    [event] = events(created["secret"], request.body, header)
    assert (event["type"], event["message_id"]) == ("delivered", accepted["id"])
    # The worker writes its attempt once the receiver has answered.
    wait_until(lambda: list(mailhub.webhooks.attempts(created["id"])), what="the attempt")
    assert [a["succeeded"] for a in mailhub.webhooks.attempts(created["id"])] == [True]


# -- errors ------------------------------------------------------------------------------------


def test_the_apis_refusals_arrive_as_typed_exceptions(mailhub, live_server):
    with pytest.raises(ValidationError) as invalid:
        mailhub.send(sender=SHOP, to=["not an address"], subject="s", text="t")
    assert invalid.value.status == 400 and invalid.value.errors[0]["field"] == "to[0]"
    assert invalid.value.request_id

    with pytest.raises(NotFound) as missing:
        mailhub.get("00000000-0000-0000-0000-000000000000")
    assert missing.value.code == "message_not_found"

    mailhub.send(sender=SHOP, to=["ann@example.com"], text="t", idempotency_key="order-42")
    with pytest.raises(IdempotencyKeyReused):
        mailhub.send(sender=SHOP, to=["bob@example.com"], text="t", idempotency_key="order-42")

    with Mailhub(live_server.url, "mh_not-a-key") as stranger, pytest.raises(AuthenticationError):
        stranger.get("00000000-0000-0000-0000-000000000000")


# -- retries against the real thing -----------------------------------------------------------


def throttle_for_about(actor: Actor, seconds: float) -> None:
    """Leave the actor's key just over its rate limit for about ``seconds``, as if it had made
    many requests in the minute before: the real throttle then answers 429 with a Retry-After
    that short, not the minute a fresh count of a low limit would take to allow one more."""
    key = ApiKey.objects.get(client=actor.client)
    limit = 1000
    api_key_set_rate_limit(key=key, per_minute=limit)
    now = time.time()
    if (now % WINDOW_SECONDS) > WINDOW_SECONDS - seconds - 5:  # too near the next window
        time.sleep(WINDOW_SECONDS - now % WINDOW_SECONDS + 0.1)
        now = time.time()
    index = int(now // WINDOW_SECONDS)
    elapsed = (now - index * WINDOW_SECONDS) / WINDOW_SECONDS
    # accounts.rate_limit allows a request once previous * (1 - elapsed') + 1 <= limit.
    previous = math.ceil((limit - 1) / (1 - elapsed - seconds / WINDOW_SECONDS))
    RateCounter.objects.update_or_create(
        api_key=key, defaults={"window_index": index, "count": 0, "previous": previous}
    )


def test_a_429_is_waited_out_as_retry_after_says_and_the_send_makes_one_message(
    sink, live_server, acme
):
    throttle_for_about(acme, 1.0)
    recorder = Recorder()
    started = time.monotonic()

    with recorder.http_client() as http:
        mailhub = Mailhub(live_server.url, acme.key, http_client=http)
        accepted = mailhub.send(sender=SHOP, to=["ann@example.com"], subject="s", text="t")

    assert recorder.statuses == [429, 202]
    [(code, retry_after)] = recorder.refusals
    assert code == "throttled" and retry_after in ("1", "2")
    assert time.monotonic() - started >= 1.0  # Retry-After: ceil of the throttle's wait
    assert recorder.keys[0] and recorder.keys[0] == recorder.keys[1]
    assert [str(id) for id in Message.objects.values_list("id", flat=True)] == [accepted["id"]]
    assert wait_until_final(accepted["id"]).status == "delivered"


def test_a_503_from_a_database_outage_is_retried_with_the_same_key_and_makes_one_message(
    sink, live_server, acme
):
    database = connection.ops.quote_name(connection.settings_dict["NAME"])

    def allow_connections(allowed: bool) -> None:
        # A limit of 0 refuses every new connection of a role that is not a superuser (the
        # test's own stays open); -1 is no limit, the default.
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER DATABASE {database} CONNECTION LIMIT {-1 if allowed else 0}")

    def end_the_outage(response: httpx.Response) -> None:
        if response.status_code == 503:
            allow_connections(True)

    recorder = Recorder(on_response=end_the_outage)
    # The live server opens a connection for each request's thread: none can now be opened.
    allow_connections(False)
    try:
        with recorder.http_client() as http:
            mailhub = Mailhub(live_server.url, acme.key, http_client=http)
            accepted = mailhub.send(sender=SHOP, to=["ann@example.com"], subject="s", text="t")
    finally:
        allow_connections(True)

    assert recorder.statuses == [503, 202]
    assert recorder.refusals == [("database_unavailable", "5")]
    assert recorder.keys[0] and recorder.keys[0] == recorder.keys[1]
    assert [str(id) for id in Message.objects.values_list("id", flat=True)] == [accepted["id"]]


# -- test-mode keys ------------------------------------------------------------------------------


def test_a_test_mode_key_sees_the_simulators_outcomes_and_mode_all_lists_live_and_test_mail(
    mailhub, sink, live_server, acme
):
    _, test_key = api_key_create(client=acme.client, name="client tests", test_mode=True)
    run = uuid.uuid4().hex[:8]  # a bounced or complained address stays suppressed
    bounce, complaint = (f"{local}+{run}@{SIMULATOR_DOMAIN}" for local in ("bounce", "complaint"))

    with Mailhub(live_server.url, test_key) as test:
        live = mailhub.send(sender=SHOP, to=["ann@example.com"], text="Live.")
        bounced = test.send(sender=SHOP, to=[bounce], text="Test.")
        complained = test.send(sender=SHOP, to=[complaint], text="Test.")
        assert (live["test_mode"], bounced["test_mode"], complained["test_mode"]) == (
            False,
            True,
            True,
        )

        message = until_final(test, bounced["id"])
        assert message["status"] == "bounced" and message["test_mode"] is True
        [attempt] = message["recipients"][0]["attempts"]
        assert (attempt["smtp_code"], attempt["enhanced_code"]) == (550, "5.1.1")
        history = test.message_events(bounced["id"])
        assert [(e["type"], e["test_mode"]) for e in history] == [
            ("accepted", True),
            ("bounced", True),
        ]
        assert test.suppressions.get(bounce)["reason"] == "hard_bounce"
        # A complaint comes after delivery: a `complained` event, the delivery stays delivered.
        wait_until(
            lambda: list(test.events(type=["complained"], message=complained["id"])),
            what="the simulated complaint",
        )
        assert until_final(test, complained["id"])["status"] == "delivered"
        assert until_final(mailhub, live["id"])["status"] == "delivered"

        # Each key lists the mail of its own mode unless asked for another, or for all.
        both = {live["id"]: False, bounced["id"]: True, complained["id"]: True}
        assert {m["id"]: m["test_mode"] for m in test.messages(mode="all")} == both
        assert {m["id"]: m["test_mode"] for m in mailhub.messages(mode="all")} == both
        assert [m["id"] for m in mailhub.messages()] == [live["id"]]
        assert {m["id"] for m in test.messages()} == {bounced["id"], complained["id"]}
        assert [m["id"] for m in test.messages(mode="live")] == [live["id"]]
        events = {(e["message_id"], e["type"], e["test_mode"]) for e in mailhub.events(mode="all")}
        assert {(live["id"], "delivered", False), (bounced["id"], "bounced", True)} <= events
        assert (complained["id"], "complained", True) in events
        assert {e["message_id"] for e in mailhub.events()} == {live["id"]}
        page = test.events_page(mode="test", type=["bounced"])
        assert [e["message_id"] for e in page.results] == [bounced["id"]]

    # Nothing of the test-mode key's reached the relay.
    assert [received.rcpt_tos for received in sink.received] == [("ann@example.com",)]


# -- asyncio -------------------------------------------------------------------------------------


def test_the_async_client_sends_reads_and_lists(sink, live_server, acme):
    async def main() -> tuple[str, str, list[str]]:
        async with AsyncMailhub(live_server.url, acme.key) as mailhub:
            accepted = await mailhub.send(sender=SHOP, to=["ann@example.com"], text="Async.")
            status = accepted["status"]
            while status not in FINAL_MESSAGE_STATUSES:
                await asyncio.sleep(0.1)
                status = (await mailhub.get(accepted["id"]))["status"]
            await mailhub.suppressions.add("bob@example.com")
            addresses = [s["address"] async for s in mailhub.suppressions.list()]
            return accepted["id"], status, addresses

    message_id, status, addresses = asyncio.run(main())

    assert status == "delivered" and addresses == ["bob@example.com"]
    assert sink.wait_for(1)[0].parsed.get_body(("plain",)).get_content().strip() == "Async."
    assert str(Message.objects.get().id) == message_id


# -- the README's example ------------------------------------------------------------------------

README_EXAMPLE = re.compile(
    r"<!-- mailhub-python-client -->\n```python\n(.*?)```\n<!-- /mailhub-python-client -->", re.S
)
DOCUMENTS = [ROOT / "clients" / "python" / "README.md", ROOT / "README.md"]


def readme_examples() -> list[tuple[str, str]]:
    found = [
        (document.relative_to(ROOT).as_posix(), block)
        for document in DOCUMENTS
        for block in README_EXAMPLE.findall(document.read_text())
    ]
    assert any(name == "clients/python/README.md" for name, _ in found), "the example is missing"
    return found


@pytest.mark.parametrize(("document", "example"), readme_examples())
def test_the_readme_example_runs_as_printed(
    document, example, sink, live_server, acme, monkeypatch, capsys
):
    monkeypatch.setenv("MAILHUB_URL", live_server.url)
    monkeypatch.setenv("MAILHUB_API_KEY", acme.key)

    exec(compile(example, document, "exec"), {"__name__": "__main__"})

    message = Message.objects.get()
    out = capsys.readouterr().out
    assert f"{message.id} queued" in out and "delivered" in out
    [received] = sink.wait_for(1)
    assert received.rcpt_tos == ("ann@example.com",)
    [receipt] = [p for p in received.parsed.walk() if p.get_filename() == "receipt.txt"]
    assert receipt.get_payload(decode=True) == b"Thank you for your order.\n"


README_TEST_MODE_EXAMPLE = re.compile(
    r"<!-- mailhub-python-client-test-mode -->\n```python\n(.*?)```\n"
    r"<!-- /mailhub-python-client-test-mode -->",
    re.S,
)


def test_the_readme_test_mode_example_runs_as_printed(
    mailhub, sink, live_server, acme, monkeypatch, capsys
):
    document = ROOT / "clients" / "python" / "README.md"
    [example] = README_TEST_MODE_EXAMPLE.findall(document.read_text())
    _, test_key = api_key_create(client=acme.client, name="readme", test_mode=True)
    monkeypatch.setenv("MAILHUB_URL", live_server.url)
    monkeypatch.setenv("MAILHUB_TEST_KEY", test_key)
    mailhub.send(sender=SHOP, to=["ann@example.com"], text="Live.")

    exec(compile(example, str(document), "exec"), {"__name__": "__main__"})

    lines = capsys.readouterr().out.splitlines()
    assert lines == ["queued True", "bounced", "accepted True", "bounced True", "1 2"]
    assert [received.rcpt_tos for received in sink.wait_for(1)] == [("ann@example.com",)]
