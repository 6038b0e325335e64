"""The tenant models' move from `api` to `accounts` migrates a database of the previous layout in
place: every row stays where it was, and the new code finds it, authenticates its key, counts its
requests and replays its stored answers. Also: the models and the migrations agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from accounts.idempotency import request_fingerprint
from accounts.models import ApiKey, Client, IdempotencyRecord, RateCounter
from accounts.services import api_key_hash
from deliveries.models import Message
from tests.builders import message_payload
from tests.support.databases import scratch_database
from tests.support.workers import ROOT, database_url
from webhooks.models import Endpoint

pytestmark = pytest.mark.integration

ALIAS = "premove"
#: The last migrations before the move: the layout of a database that has never seen `accounts`.
PREVIOUS_LAYOUT = [
    ("auth", "0012_alter_user_first_name_max_length"),
    ("api", "0003_rate_counter"),
    ("deliveries", "0007_poison_isolation"),
    ("webhooks", "0001_initial"),
]
MOVED = ["apikey", "client", "idempotencyrecord", "ratecounter"]
SECRET = "mh_" + "k" * 43
URL = "/api/v1/messages"


@pytest.fixture
def premove(django_db_setup, django_db_blocker) -> Iterator[str]:
    """An empty database of its own beside the test database; yields its connection alias."""
    with django_db_blocker.unblock(), scratch_database(ALIAS) as alias:
        yield alias


def seed_previous_layout(db: str) -> dict:
    """Migrate ``db`` to the previous layout and fill it through the models of that layout, as
    the code of that time would have: a client with a key, its rate counter, a stored answer, a
    message, a webhook endpoint and an operator allowed to change keys."""
    for app, migration in PREVIOUS_LAYOUT:
        call_command("migrate", app, migration, database=db, verbosity=0)
    old = MigrationExecutor(connections[db]).loader.project_state(PREVIOUS_LAYOUT).apps
    now = timezone.now()

    client = old.get_model("api", "Client").objects.using(db).create(name="acme")
    key = (
        old.get_model("api", "ApiKey")
        .objects.using(db)
        .create(
            client=client,
            name="production",
            prefix=SECRET[:11],
            key_hash=api_key_hash(SECRET),
            rate_limit_per_minute=30,
        )
    )
    window = int(now.timestamp() // 60)
    old.get_model("api", "RateCounter").objects.using(db).create(
        api_key=key, window_index=window, count=2, previous=5
    )
    message = (
        old.get_model("deliveries", "Message")
        .objects.using(db)
        .create(
            client=client,
            sender="Shop <no-reply@shop.test>",
            subject="Accepted before the move",
            text_body="Hello",
            message_id="<before-the-move@shop.test>",
            created_at=now,
            expires_at=now + timedelta(days=1),
        )
    )
    old.get_model("deliveries", "Delivery").objects.using(db).create(
        message=message,
        address="ann@example.com",
        domain="example.com",
        status="queued",
        updated_at=now,
    )
    payload = message_payload()
    answer = {"id": str(message.id), "status": "queued"}
    old.get_model("api", "IdempotencyRecord").objects.using(db).create(
        client=client,
        key="order-42",
        request_hash=request_fingerprint(method="POST", path=URL, body=payload),
        response_status=202,
        response_body=answer,
        response_headers={"Location": f"{URL}/{message.id}"},
        created_at=now,
        expires_at=now + timedelta(days=1),
    )
    endpoint = (
        old.get_model("webhooks", "Endpoint")
        .objects.using(db)
        .create(client=client, url="https://hooks.acme.test/mailhub", secret="whsec")
    )
    # The content types and a permission that the previous code's post_migrate made (today's
    # `api` has no models module, so today's post_migrate makes none for it).
    ContentType = old.get_model("contenttypes", "ContentType")
    content_types = {
        model: ContentType.objects.using(db).create(app_label="api", model=model).id
        for model in MOVED
    }
    permission = (
        old.get_model("auth", "Permission")
        .objects.using(db)
        .create(
            content_type_id=content_types["apikey"], codename="change_apikey", name="Can change"
        )
    )
    operator = old.get_model("auth", "User").objects.using(db).create(username="ops")
    operator.user_permissions.add(permission)
    return {
        "client": client.id,
        "key": key.id,
        "window": window,
        "message": message.id,
        "endpoint": endpoint.id,
        "payload": payload,
        "answer": answer,
        "content_types": content_types,
    }


# Run by the new code in a process of its own against the migrated database: the key
# authenticates, the request is counted on the old counter row, and the answer stored before the
# move is replayed (nothing is created); the message is the client's.
_NEW_CODE = """
import json, os, sys, django
django.setup()
from rest_framework.test import APIClient
from accounts.models import RateCounter
api = APIClient()
api.credentials(HTTP_AUTHORIZATION="Bearer " + os.environ["KEY"])
replay = api.post("/api/v1/messages", json.loads(os.environ["PAYLOAD"]), format="json",
                  HTTP_IDEMPOTENCY_KEY="order-42", SERVER_NAME="localhost")
detail = api.get(replay["Location"], SERVER_NAME="localhost")
json.dump({"replay": [replay.status_code, replay.json(), replay.get("Idempotent-Replayed")],
           "detail": [detail.status_code, detail.json().get("subject")],
           "counter": RateCounter.objects.values_list("window_index", "count").get()}, sys.stdout)
"""


def test_a_database_of_the_previous_layout_migrates_in_place(premove):
    before = seed_previous_layout(premove)

    call_command("migrate", database=premove, verbosity=0)

    key = ApiKey.objects.using(premove).select_related("client").get(id=before["key"])
    assert key.key_hash == api_key_hash(SECRET)
    assert (key.client.id, key.client.name, key.name) == (before["client"], "acme", "production")
    assert key.rate_limit_per_minute == 30 and key.is_active
    assert list(Client.objects.using(premove).values_list("name", flat=True)) == ["acme"]
    counter = RateCounter.objects.using(premove).get(api_key=key)
    assert (counter.window_index, counter.count, counter.previous) == (before["window"], 2, 5)
    record = IdempotencyRecord.objects.using(premove).get(client=key.client, key="order-42")
    assert record.response_body == before["answer"]
    assert Message.objects.using(premove).get(id=before["message"]).client_id == key.client.id
    assert Endpoint.objects.using(premove).get(id=before["endpoint"]).client_id == key.client.id
    # The content types moved with their ids: permissions and admin history still point at them.
    with connections[premove].cursor() as cursor:
        cursor.execute("SELECT app_label, model, id FROM django_content_type")
        moved = {(app, model): id_ for app, model, id_ in cursor.fetchall() if model in MOVED}
        cursor.execute(
            "SELECT ct.app_label, p.codename FROM auth_user_user_permissions up"
            " JOIN auth_permission p ON p.id = up.permission_id"
            " JOIN django_content_type ct ON ct.id = p.content_type_id"
        )
        operator_may = cursor.fetchall()
    assert moved == {("accounts", model): id_ for model, id_ in before["content_types"].items()}
    assert operator_may == [("accounts", "change_apikey")]

    server, _ = database_url().rsplit("/", 1)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"{server}/{connections[premove].settings_dict['NAME']}",
        "KEY": SECRET,
        "PAYLOAD": json.dumps(before["payload"]),
    }
    new_code = subprocess.run(
        [sys.executable, "-c", _NEW_CODE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert new_code.returncode == 0, new_code.stderr
    seen = json.loads(new_code.stdout)
    assert seen["replay"] == [202, before["answer"], "true"]
    assert seen["detail"] == [200, "Accepted before the move"]
    # Two requests counted on the row of before: after its two, or in a minute that began since.
    window, count = seen["counter"]
    assert count == 4 if window == before["window"] else count in (1, 2)
    assert Message.objects.using(premove).count() == 1


def test_the_migrations_describe_the_models_exactly(db):
    # Exits non-zero when a model change has no migration (or a migration no model change).
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
