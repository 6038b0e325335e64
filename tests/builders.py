"""Plain builder functions for tests: sensible defaults, override what the test is about."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework.test import APIClient

from accounts.models import Client
from accounts.services import api_key_create, client_get_or_create


@dataclass
class Actor:
    """A client of Mailhub with a working API key and an HTTP client that uses it."""

    client: Client
    key: str
    api: APIClient


def make_actor(name: str, *, test_mode: bool = False) -> Actor:
    """The client ``name`` (created if new) with a new key of its own: a test-mode one if asked."""
    client = client_get_or_create(name=name)
    _, secret = api_key_create(client=client, name="tests", test_mode=test_mode)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return Actor(client=client, key=secret, api=api)


def message_payload(**overrides) -> dict:
    payload = {
        "from": "Shop <no-reply@shop.test>",
        "to": ["ann@example.com"],
        "subject": "Your code is 123456",
        "text": "Your verification code is 123456.",
        "priority": "normal",
    }
    payload.update(overrides)
    return payload
