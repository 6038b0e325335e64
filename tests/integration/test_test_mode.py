"""Test-mode keys on the real stack: mail sent through the API with a test-mode key is stored and
recorded like live mail, settled by the simulator in the real worker processes (each scripted
address with its documented outcome, events, suppressions and webhooks), and never reaches the
SMTP sink, while a live key of the same client sends as before. Lists keep the two apart unless
asked; the command, the admin and idempotency know the mode too."""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
import uuid
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from accounts.models import ApiKey
from accounts.services import api_key_hash
from deliveries.models import Attempt, Delivery, Event, Message, Suppression
from deliveries.policy import SmtpReply, Stage
from deliveries.services import MessageDraft, Recipient, deliveries_send, message_accept
from deliveries.simulator import SIMULATOR_DOMAIN, SIMULATOR_RELAY
from deliveries.smtp import Envelope
from deliveries.states import DeliveryStatus, MessageStatus
from tests.builders import Actor, make_actor, message_payload
from tests.integration import test_webhooks_stack as webhooks_stack
from tests.integration.conftest import wait_until_final
from tests.support.workers import ROOT
from webhooks.models import Endpoint

pytestmark = pytest.mark.integration
S = DeliveryStatus

BOUNCE = f"bounce@{SIMULATOR_DOMAIN}"
DEFER = f"defer@{SIMULATOR_DOMAIN}"
COMPLAINT = f"complaint@{SIMULATOR_DOMAIN}"
TIMEOUT = f"timeout@{SIMULATOR_DOMAIN}"

# The webhook worker and the receiver that checks signatures, as the webhook tests run them.
webhooks_worker = webhooks_stack.webhooks_worker
receiver = webhooks_stack.receiver
subscribe = webhooks_stack.subscribe


@pytest.fixture
def acme_test(acme) -> Actor:
    """A test-mode key of acme's, the client the `acme` actor's live key belongs to."""
    return make_actor("acme", test_mode=True)


def post(actor: Actor, **overrides) -> uuid.UUID:
    response = actor.api.post("/api/v1/messages", message_payload(**overrides), format="json")
    assert response.status_code == 202, response.content
    return uuid.UUID(response.json()["id"])


def history(message_id) -> dict[str, list[tuple]]:
    """Each recipient's events, oldest first: (type, attempt, smtp code, enhanced code)."""
    found: dict[str, list[tuple]] = {}
    events = Event.objects.filter(message_id=message_id).order_by("created_at", "delivery_id")
    for e in events:
        found.setdefault(e.recipient, []).append((e.type, e.attempt, e.smtp_code, e.enhanced_code))
    return found


# -- the simulator's outcomes, through the real workers ---------------------------------------


def test_each_simulator_address_gets_its_documented_outcome_and_events(sink, acme_test):
    message_id = post(acme_test, to=["ann@example.com", BOUNCE, DEFER, COMPLAINT])

    message = wait_until_final(message_id)

    assert message.test_mode and message.status == MessageStatus.PARTIALLY_DELIVERED
    statuses = dict(Delivery.objects.filter(message=message).values_list("address", "status"))
    assert statuses == {
        "ann@example.com": S.DELIVERED,
        BOUNCE: S.BOUNCED,
        DEFER: S.DELIVERED,
        COMPLAINT: S.DELIVERED,
    }
    assert history(message_id) == {
        "ann@example.com": [("accepted", 0, None, ""), ("delivered", 1, 250, "2.0.0")],
        BOUNCE: [("accepted", 0, None, ""), ("bounced", 1, 550, "5.1.1")],
        DEFER: [
            ("accepted", 0, None, ""),
            ("deferred", 1, 451, "4.7.1"),
            ("delivered", 2, 250, "2.0.0"),
        ],
        COMPLAINT: [
            ("accepted", 0, None, ""),
            ("delivered", 1, 250, "2.0.0"),
            ("complained", 1, None, ""),
        ],
    }
    assert set(Event.objects.filter(message=message).values_list("test_mode", flat=True)) == {True}
    # The normal policy path: the bounce and the complaint suppress their address.
    assert dict(Suppression.objects.values_list("address", "reason")) == {
        BOUNCE: "hard_bounce",
        COMPLAINT: "complaint",
    }
    attempts = Attempt.objects.filter(delivery__message=message)
    assert {a.relay for a in attempts} == {SIMULATOR_RELAY}
    assert all(a.task_id and a.worker and "test mode" in a.reply for a in attempts)
    # Nothing went out: no message, not even a connection.
    time.sleep(1)
    assert sink.received == [] and sink.connections == 0


def test_a_suppressed_simulator_address_is_suppressed_next_time_and_a_plus_tag_is_a_new_one(
    sink, acme_test
):
    first = wait_until_final(post(acme_test, to=[BOUNCE]))
    again = wait_until_final(post(acme_test, to=[BOUNCE, f"bounce+again@{SIMULATOR_DOMAIN}"]))

    assert first.status == MessageStatus.BOUNCED
    assert dict(Delivery.objects.filter(message=again).values_list("address", "status")) == {
        BOUNCE: S.SUPPRESSED,
        f"bounce+again@{SIMULATOR_DOMAIN}": S.BOUNCED,
    }
    assert sink.received == []


def test_timeout_times_out_on_every_attempt_until_the_policy_gives_up(sink, acme_test):
    message_id = post(acme_test, to=[TIMEOUT])

    message = wait_until_final(message_id, timeout=60)

    assert message.status == MessageStatus.FAILED
    events = history(message_id)[TIMEOUT]
    attempts = settings.MAILHUB_MAX_ATTEMPTS  # the workers retry after 0.5 to 2 s
    assert events == [
        ("accepted", 0, None, ""),
        *[("deferred", n, None, "") for n in range(1, attempts)],
        ("failed", attempts, None, ""),
    ]
    outcomes = Attempt.objects.filter(delivery__message_id=message_id).order_by("number")
    assert [a.outcome for a in outcomes] == ["deferred"] * (attempts - 1) + ["failed"]
    assert all(a.smtp_code is None and "timed out" in a.reply for a in outcomes)
    assert not Suppression.objects.exists()
    assert sink.received == []


def test_a_complaint_reaches_the_webhook_like_every_other_event(sink, receiver, acme_test):
    subscribe(acme_test, receiver)

    message_id = post(acme_test, to=[COMPLAINT])

    receiver.wait_until(
        lambda r: any(e["type"] == "complained" for e in r.events()), what="the complaint"
    )
    events = [e for e in receiver.events() if e["message_id"] == str(message_id)]
    assert [e["type"] for e in events] == ["accepted", "delivered", "complained"]
    assert {e["test_mode"] for e in events} == {True}
    complaint = events[-1]
    assert complaint["recipient"] == COMPLAINT and "complaint" in complaint["reply"]
    assert all(request.signature_valid for request in receiver.requests)
    assert sink.received == []


def test_a_live_key_and_a_test_key_of_one_client_send_at_once_and_only_live_mail_goes_out(
    sink, acme, acme_test
):
    # The same recipients: at the simulator's domain a live message is plain mail to the relay.
    recipients = ["ann@example.com", BOUNCE]
    live_id = post(acme, to=recipients, subject="live")
    test_id = post(acme_test, to=recipients, subject="test")

    live, test = wait_until_final(live_id), wait_until_final(test_id)

    [received] = sink.wait_for(1)
    assert received.parsed["Message-ID"] == live.message_id
    assert sorted(received.rcpt_tos) == sorted(recipients)
    assert (live.test_mode, live.status) == (False, MessageStatus.DELIVERED)
    assert (test.test_mode, test.status) == (True, MessageStatus.PARTIALLY_DELIVERED)
    relays = dict(Attempt.objects.values_list("delivery__message_id", "relay"))
    assert relays[test.id] == SIMULATOR_RELAY and relays[live.id] != SIMULATOR_RELAY
    time.sleep(1)
    assert len(sink.received) == 1


# -- one task holding both kinds, in this process ---------------------------------------------


class RecordingTransport:
    """Answers like a relay and remembers what it was handed; ``fail`` makes it unreachable."""

    def __init__(self, *, fail: bool = False) -> None:
        self.sent: list[Envelope] = []
        self.fail = fail

    def send(self, envelope: Envelope, *, deadline: float) -> dict[str, SmtpReply]:
        self.sent.append(envelope)
        if self.fail:
            reply = SmtpReply(None, "cannot connect to relay.test:25", Stage.CONNECT, "relay.test")
        else:
            reply = SmtpReply(250, "2.0.0 OK", Stage.DATA, "relay.test")
        return dict.fromkeys(envelope.recipients, reply)

    def close(self) -> None:
        pass


def accept(actor_client, *addresses: str, test_mode: bool) -> Message:
    draft = MessageDraft(
        sender="Shop <no-reply@shop.test>",
        recipients=[Recipient(address) for address in addresses],
        subject="Hello",
        text="Hi.",
    )
    return message_accept(client=actor_client, draft=draft, test_mode=test_mode)


def test_a_task_of_test_mail_only_never_touches_the_transport(acme):
    message = accept(acme.client, "ann@example.com", BOUNCE, test_mode=True)
    transport = RecordingTransport()

    deliveries_send(message_ids=[message.id], task_id="t", worker="w", transport=transport)

    assert transport.sent == []
    assert sorted(message.deliveries.values_list("status", flat=True)) == [S.BOUNCED, S.DELIVERED]


def test_in_a_mixed_task_live_mail_goes_to_the_transport_and_test_mail_to_the_simulator(acme):
    test_first = accept(acme.client, "ann@example.com", test_mode=True)
    live = accept(acme.client, "bob@example.com", test_mode=False)
    test_last = accept(acme.client, DEFER, test_mode=True)
    transport = RecordingTransport(fail=True)  # the relay cannot be reached

    deliveries_send(
        message_ids=[test_first.id, live.id, test_last.id],
        task_id="t",
        worker="w",
        transport=transport,
    )

    assert [envelope.recipients for envelope in transport.sent] == [["bob@example.com"]]
    # The live message waits for its relay; the test mail after it in the batch is not
    # deferred with it (a relay fault defers the rest of a batch without trying), but simulated.
    assert live.deliveries.get().status == S.DEFERRED
    assert test_first.deliveries.get().status == S.DELIVERED
    deferred = test_last.deliveries.get()
    assert (deferred.status, deferred.last_code, deferred.relay_failures) == (S.DEFERRED, 451, 0)


# -- lists keep the modes apart ----------------------------------------------------------------


def listed(actor: Actor, path: str, **query) -> list[str]:
    response = actor.api.get(path, query)
    assert response.status_code == 200, response.content
    return [item.get("message_id") or item["id"] for item in response.json()["results"]]


def test_each_key_lists_its_own_mode_unless_it_asks_for_another(acme, acme_test):
    live_id = str(post(acme, subject="live"))
    test_id = str(post(acme_test, subject="test"))

    assert listed(acme, "/api/v1/messages") == [live_id]
    assert listed(acme_test, "/api/v1/messages") == [test_id]
    for actor in (acme, acme_test):
        assert listed(actor, "/api/v1/messages", mode="live") == [live_id]
        assert listed(actor, "/api/v1/messages", mode="test") == [test_id]
        assert sorted(listed(actor, "/api/v1/messages", mode="all")) == sorted([live_id, test_id])
    # The event log, likewise.
    assert set(listed(acme, "/api/v1/events")) == {live_id}
    assert set(listed(acme_test, "/api/v1/events")) == {test_id}
    assert set(listed(acme, "/api/v1/events", mode="test")) == {test_id}
    assert set(listed(acme_test, "/api/v1/events", mode="all")) == {live_id, test_id}
    bad = acme.api.get("/api/v1/messages", {"mode": "both"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "mode"
    assert acme.api.get("/api/v1/events", {"mode": "both"}).status_code == 400


def test_a_message_shows_its_mode_and_either_key_of_the_client_reads_it(acme, acme_test, globex):
    response = acme_test.api.post("/api/v1/messages", message_payload(), format="json")
    assert response.json()["test_mode"] is True
    message_id = response.json()["id"]
    live = acme.api.post("/api/v1/messages", message_payload(), format="json").json()
    assert live["test_mode"] is False

    for actor in (acme, acme_test):
        detail = actor.api.get(f"/api/v1/messages/{message_id}").json()
        assert detail["test_mode"] is True
        events = actor.api.get(f"/api/v1/messages/{message_id}/events").json()["results"]
        assert [(e["type"], e["test_mode"]) for e in events] == [("accepted", True)]
    [summary] = acme_test.api.get("/api/v1/messages").json()["results"]
    assert summary["test_mode"] is True
    assert globex.api.get(f"/api/v1/messages/{message_id}").status_code == 404


def test_a_batch_with_a_test_key_is_test_mail(acme_test):
    response = acme_test.api.post(
        "/api/v1/messages/batch",
        {"defaults": message_payload(), "messages": [{"to": ["a@example.com"]}, {"to": ["b@x"]}]},
        format="json",
    )

    assert response.status_code == 207
    ok, refused = response.json()["results"]
    assert ok["test_mode"] is True and "test_mode" not in refused
    assert Message.objects.get().test_mode


def test_an_idempotency_key_used_in_test_mode_is_new_to_the_live_keys(acme, acme_test):
    headers = {"HTTP_IDEMPOTENCY_KEY": "order-42"}
    payload = message_payload()

    tested = acme_test.api.post("/api/v1/messages", payload, format="json", **headers)
    live = acme.api.post("/api/v1/messages", payload, format="json", **headers)
    replayed = acme.api.post("/api/v1/messages", payload, format="json", **headers)

    assert tested.status_code == live.status_code == replayed.status_code == 202
    assert live.json()["id"] != tested.json()["id"] and live.json()["test_mode"] is False
    assert replayed.json() == live.json() and replayed["Idempotent-Replayed"] == "true"
    assert sorted(Message.objects.values_list("test_mode", flat=True)) == [False, True]


# -- the command and the admin -----------------------------------------------------------------


def test_create_api_key_test_makes_a_test_mode_key_that_says_so(db):
    out, err = StringIO(), StringIO()
    call_command("create_api_key", "acme", "--test", "--name", "ci", stdout=out, stderr=err)

    secret = out.getvalue().strip()
    key = ApiKey.objects.get(key_hash=api_key_hash(secret))
    assert key.test_mode and key.client.name == "acme" and key.name == "ci"
    assert secret.startswith("mh_test_") and key.prefix == secret[:16]
    assert "test-mode key mh_test_" in err.getvalue()
    call_command("create_api_key", "acme", stdout=out, stderr=StringIO())
    live_secret = out.getvalue().split()[-1]
    assert not live_secret.startswith("mh_test_") and live_secret.startswith("mh_")
    assert not ApiKey.objects.get(key_hash=api_key_hash(live_secret)).test_mode


def test_the_admin_lists_and_filters_keys_by_mode_and_creates_test_keys(admin_client, acme):
    make_actor("acme", test_mode=True)
    changelist = reverse("admin:accounts_apikey_changelist")

    page = admin_client.get(changelist).content.decode()
    only_test = admin_client.get(changelist, {"mode": "test"})
    only_live = admin_client.get(changelist, {"mode": "live"})

    assert "column-mode" in page
    assert '"field-mode">test</td>' in page and '"field-mode">live</td>' in page
    assert [k.test_mode for k in only_test.context["cl"].result_list] == [True]
    assert [k.test_mode for k in only_live.context["cl"].result_list] == [False]
    response = admin_client.post(
        reverse("admin:accounts_apikey_add"),
        {"client": acme.client.id, "name": "staging", "test_mode": "on"},
    )
    secret = response.context["secret"]
    assert secret.startswith("mh_test_") and "test-mode" in response.content.decode()
    assert ApiKey.objects.get(name="staging").test_mode


def test_the_admin_lists_and_filters_messages_by_mode(admin_client, acme, acme_test):
    post(acme, subject="live")
    post(acme_test, subject="test")
    changelist = reverse("admin:deliveries_message_changelist")

    only_test = admin_client.get(changelist, {"test_mode__exact": "1"})

    assert [m.subject for m in only_test.context["cl"].result_list] == ["test"]
    assert "column-test_mode" in admin_client.get(changelist).content.decode()


# -- the README's example ----------------------------------------------------------------------


def readme_example() -> tuple[str, dict]:
    """The README's example of testing an integration, and the output it documents."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- mailhub-test-mode -->\n```python\n(.*?)```\n.*?```json\n(.*?)```\n"
        r"<!-- /mailhub-test-mode -->",
        readme,
        re.S,
    )
    assert block, "the README's test-mode example is missing"
    return block.group(1), json.loads(block.group(2))


def test_the_readme_example_prints_what_the_readme_says(sink, live_server, acme_test, monkeypatch):
    code, documented = readme_example()
    monkeypatch.setenv("MAILHUB_URL", live_server.url)
    monkeypatch.setenv("MAILHUB_TEST_KEY", acme_test.key)
    out = io.StringIO()

    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme_test_mode"})

    assert json.loads(out.getvalue()) == documented
    message = Message.objects.get()
    assert message.test_mode and message.client == acme_test.client
    assert sink.received == [] and sink.connections == 0


# -- the migration that brings `complained` -----------------------------------------------------


def test_an_endpoint_that_took_every_event_type_takes_complaints_after_the_migration(
    transactional_db,
):
    before = [("webhooks", "0002_client_in_accounts")]
    after = [("webhooks", "0003_complained_events")]
    every_earlier = [t for t in Event.Type.values if t != "complained"]
    client = make_actor("acme").client
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(before)
        old = MigrationExecutor(connection).loader.project_state(before).apps
        endpoint = old.get_model("webhooks", "Endpoint")
        everything = endpoint.objects.create(
            client_id=client.id, url="https://a.test/", secret="s", event_types=every_earlier
        )
        some = endpoint.objects.create(
            client_id=client.id, url="https://b.test/", secret="s", event_types=["bounced"]
        )
        MigrationExecutor(connection).migrate(after)
    finally:
        MigrationExecutor(connection).migrate(
            MigrationExecutor(connection).loader.graph.leaf_nodes()
        )

    assert Endpoint.objects.get(id=everything.id).event_types == [*every_earlier, "complained"]
    assert Endpoint.objects.get(id=some.id).event_types == ["bounced"]
    assert "complained" in Endpoint(client=client).event_types
