"""Admin login throttling (django-axes) through the real login page on the real Postgres: after
MAILHUB_ADMIN_LOGIN_FAILURES wrong passwords a username is locked out from that address, even
for the right password, until the lockout ends or an operator lifts it; nobody else is, and the
API's keys have nothing to do with it."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from tests.builders import message_payload

pytestmark = pytest.mark.integration

PASSWORD = "right-horse-battery-staple"
ATTACKER = "203.0.113.66"
COLLEAGUE = "198.51.100.7"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Every login attempt hashes a password (a wrong one too); PBKDF2 would make each a second.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def ops(db) -> User:
    return User.objects.create_superuser("ops", "ops@example.com", PASSWORD)


def log_in(client, username: str, password: str, *, address: str = ATTACKER):
    return client.post(
        reverse("admin:login"),
        {"username": username, "password": password, "next": reverse("admin:index")},
        REMOTE_ADDR=address,
    )


def logged_in(client) -> bool:
    return client.get(reverse("admin:index")).status_code == 200


def lock_out(client, username: str = "ops", *, address: str = ATTACKER):
    for attempt in range(1, settings.AXES_FAILURE_LIMIT + 1):
        response = log_in(client, username, f"guess-{attempt}", address=address)
        expected = 429 if attempt == settings.AXES_FAILURE_LIMIT else 200
        assert response.status_code == expected, attempt


def test_production_defaults_five_failures_fifteen_minutes_per_username_and_address():
    assert settings.AXES_FAILURE_LIMIT == 5
    assert timedelta(minutes=15) == settings.AXES_COOLOFF_TIME
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]


def test_after_five_wrong_passwords_even_the_right_one_is_refused(client, ops):
    lock_out(client)

    response = log_in(client, "ops", PASSWORD)

    assert response.status_code == 429
    assert "too many login attempts" in response.content.decode().lower()
    assert not logged_in(client)


def test_the_lockout_touches_neither_that_user_elsewhere_nor_another_user_there(client, ops):
    User.objects.create_superuser("dana", "dana@example.com", PASSWORD)
    lock_out(client)

    assert log_in(client, "ops", PASSWORD, address=COLLEAGUE).status_code == 302
    assert logged_in(client)
    client.logout()
    assert log_in(client, "dana", PASSWORD, address=ATTACKER).status_code == 302
    assert logged_in(client)


def test_a_successful_login_forgets_earlier_failures(client, ops):
    for attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "ops", f"typo-{attempt}")
    assert log_in(client, "ops", PASSWORD).status_code == 302
    client.logout()

    assert log_in(client, "ops", "one-more-typo").status_code == 200  # counting starts anew


def test_the_lockout_ends_after_the_cool_off(client, ops):
    lock_out(client)
    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=16)
    )

    assert log_in(client, "ops", PASSWORD).status_code == 302


def test_an_operator_lifts_a_lockout_with_axes_reset_username(client, ops):
    lock_out(client)

    call_command("axes_reset_username", "ops")

    assert log_in(client, "ops", PASSWORD).status_code == 302


def test_api_keys_are_not_counted_or_locked_out_by_the_admin_lockout(client, ops, acme):
    lock_out(client, address="127.0.0.1")
    stranger = APIClient()
    for _ in range(settings.AXES_FAILURE_LIMIT * 2):
        wrong = stranger.get("/api/v1/messages", HTTP_AUTHORIZATION="Bearer mh_not-a-key")
        assert wrong.status_code == 401

    response = acme.api.post("/api/v1/messages", message_payload(), format="json")

    assert response.status_code == 202, response.content
    assert AccessAttempt.objects.filter(ip_address="127.0.0.1").count() == 1  # the admin's


def client_address(env: dict[str, str], remote_addr: str, forwarded_for: str | None) -> str:
    """The address axes counts a request by, under settings built from ``env``."""
    code = (
        "import django; django.setup()\n"
        "from axes.helpers import get_client_ip_address\n"
        "from django.test import RequestFactory\n"
        "import sys\n"
        "meta = {'REMOTE_ADDR': sys.argv[1]}\n"
        "if len(sys.argv) > 2: meta['HTTP_X_FORWARDED_FOR'] = sys.argv[2]\n"
        "print(get_client_ip_address(RequestFactory().post('/admin/login/', **meta)))\n"
    )
    args = [remote_addr] + ([forwarded_for] if forwarded_for is not None else [])
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_without_a_proxy_the_address_is_the_peers_and_x_forwarded_for_is_ignored():
    assert client_address({}, "203.0.113.5", "6.6.6.6") == "203.0.113.5"


@pytest.mark.parametrize(
    ("proxies", "forwarded_for", "expected"),
    [
        # One proxy appends the address it was reached from; what the client wrote stays left.
        ("1", "203.0.113.5", "203.0.113.5"),
        ("1", "6.6.6.6, 203.0.113.5", "203.0.113.5"),
        # Two proxies: the outer one's peer is second from the right.
        ("2", "6.6.6.6, 203.0.113.5, 10.0.0.2", "203.0.113.5"),
    ],
)
def test_behind_proxies_the_address_is_taken_from_x_forwarded_for_counted_from_the_right(
    proxies, forwarded_for, expected
):
    env = {"MAILHUB_TRUSTED_PROXIES": proxies}
    assert client_address(env, "10.0.0.3", forwarded_for) == expected
