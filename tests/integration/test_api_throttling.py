"""Rate limits per API key: 429 with Retry-After in the problem shape, a limit per key, and one
count shared by every API process (the counters are in Postgres)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import ApiKey, RateCounter
from accounts.rate_limit import api_key_rate_check, rate_check
from accounts.services import api_key_set_rate_limit
from api.authentication import ApiKeyAuthentication
from deliveries.models import Message
from tests.builders import make_actor, message_payload
from tests.integration.test_api_input import assert_problem
from tests.support.workers import ROOT

pytestmark = pytest.mark.integration

URL = "/api/v1/messages"


def limit_key(actor, per_minute: int | None) -> None:
    for key in ApiKey.objects.filter(client=actor.client):
        api_key_set_rate_limit(key=key, per_minute=per_minute)


def test_requests_past_the_keys_limit_get_429_with_retry_after(acme):
    limit_key(acme, 3)
    assert [acme.api.get(URL).status_code for _ in range(3)] == [200, 200, 200]

    refused = acme.api.get(URL)

    body = assert_problem(refused, status=429, code="throttled")
    retry_after = int(refused["Retry-After"])
    assert 1 <= retry_after <= 120
    assert body["retry_after"] == retry_after


def test_a_refused_request_does_nothing(acme):
    limit_key(acme, 1)
    assert acme.api.post(URL, message_payload(), format="json").status_code == 202
    assert acme.api.post(URL, message_payload(), format="json").status_code == 429
    assert Message.objects.count() == 1


def test_without_a_limit_of_its_own_a_key_gets_the_default(acme, settings):
    settings.MAILHUB_API_RATE_LIMIT_PER_MINUTE = 2
    assert [acme.api.get(URL).status_code for _ in range(3)] == [200, 200, 429]


def test_each_key_has_its_own_count_and_its_own_limit(acme, globex):
    limit_key(acme, 1)
    limit_key(globex, 3)
    assert [acme.api.get(URL).status_code for _ in range(2)] == [200, 429]
    assert [globex.api.get(URL).status_code for _ in range(4)] == [200, 200, 200, 429]

    second_key = make_actor("acme")  # the same client, a new key: a count of its own
    assert second_key.api.get(URL).status_code == 200


def test_an_unauthenticated_request_is_refused_as_such_not_throttled(acme):
    limit_key(acme, 1)
    acme.api.get(URL)
    assert_problem(APIClient().get(URL), status=401, code="not_authenticated")


_OTHER_PROCESS = """
import os, django
django.setup()
from django.test import Client
client = Client(HTTP_AUTHORIZATION="Bearer " + os.environ["KEY"])
for _ in range(2):
    print(client.get("/api/v1/messages", SERVER_NAME="localhost").status_code)
"""


def test_the_count_is_shared_by_separate_api_processes(transactional_db, acme):
    limit_key(acme, 3)
    assert acme.api.get(URL).status_code == 200
    assert acme.api.get(URL).status_code == 200
    db = django_settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/"
        f"{db['NAME']}",
        "KEY": acme.key,
    }

    other = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert other.returncode == 0, other.stderr
    assert other.stdout.split() == ["200", "429"]  # the third request of the minute, then none
    assert_problem(acme.api.get(URL), status=429, code="throttled")


@pytest.mark.parametrize("limit", [1, 3, 7])
def test_the_counting_statement_decides_exactly_as_rate_check(acme, limit):
    # Requests spread over three windows, with gaps that skip a window and land at its edges,
    # where the previous window's weight matters most.
    times = [600.0, 600.5, 601.0, 630.0, 659.99, 660.0, 660.01, 675.0, 689.9, 690.0, 719.0]
    times += [720.0 + 7.5 * i for i in range(8)] + [900.0, 900.1, 959.999, 960.0, 960.5]
    key = ApiKey.objects.filter(client=acme.client).first()
    state = None

    for now in times:
        expected = rate_check(state=state, now=now, limit=limit)
        decided = api_key_rate_check(key_id=key.id, limit=limit, now=now)

        assert (decided.allowed, decided.state) == (expected.allowed, expected.state), now
        assert decided.wait_seconds == pytest.approx(expected.wait_seconds)
        if expected.allowed:
            state = expected.state
    assert RateCounter.objects.get(api_key=key).count == state[1]


def _synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def test_counting_outside_a_transaction_commits_each_count_and_changes_no_setting(
    transactional_db, acme
):
    # Each count is its own transaction, committed without waiting for the WAL flush (SET
    # LOCAL): the counts are stored, and the session's setting is untouched afterwards.
    key = ApiKey.objects.filter(client=acme.client).first()
    assert not connection.in_atomic_block
    decisions = [api_key_rate_check(key_id=key.id, limit=2, now=600.0 + i) for i in range(3)]

    assert [d.allowed for d in decisions] == [True, True, False]
    assert _synchronous_commit() == "on"
    assert RateCounter.objects.get(api_key=key).count == 2


def test_counting_inside_a_transaction_leaves_its_commit_synchronous(acme):
    key = ApiKey.objects.filter(client=acme.client).first()
    assert connection.in_atomic_block  # the test's transaction
    assert api_key_rate_check(key_id=key.id, limit=2, now=600.0).allowed
    assert _synchronous_commit() == "on"


def test_a_key_deleted_after_authentication_is_refused_as_invalid_not_a_500(
    transactional_db, acme, monkeypatch
):
    key = ApiKey.objects.get(client=acme.client)
    real_authenticate = ApiKeyAuthentication.authenticate

    def authenticate_then_delete(self, request):
        authenticated = real_authenticate(self, request)
        ApiKey.objects.filter(id=key.id).delete()  # an operator, at that very moment
        return authenticated

    monkeypatch.setattr(ApiKeyAuthentication, "authenticate", authenticate_then_delete)
    # Committed statements (transactional_db): the counter's foreign key is checked when its
    # statement commits, as in production, not at the end of a test transaction.

    assert_problem(acme.api.get(URL), status=401, code="invalid_api_key")
