"""The OpenAPI schema generated from the code, and the API held to it by schemathesis: for
generated requests to every operation, no 5xx, and every answer (status, content type, headers,
body) is one the schema declares."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.models import ApiKey

pytestmark = pytest.mark.integration

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# The schema is what /api/schema/ serves; the calls go to the same Django app in-process.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", WSGIHandler())


@pytest.fixture
def in_test_transaction():
    """Let the raw WSGI app run inside the test's transaction, as Django's test client does:
    its request signals would otherwise close the connection that holds the transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_operation_answers_as_its_schema_says(case, acme, in_test_transaction):
    ApiKey.objects.filter(client=acme.client).update(rate_limit_per_minute=100_000)
    case.call_and_validate(headers={"Authorization": f"Bearer {acme.key}"}, checks=CHECKS)


def test_the_schema_documents_every_endpoint_of_the_send_api(db):
    paths = APIClient().get("/api/schema/?format=json").json()["paths"]
    assert {
        "/api/v1/messages": {"get", "post"},
        "/api/v1/messages/batch": {"post"},
        "/api/v1/messages/{message_id}": {"get"},
        "/api/v1/messages/{message_id}/cancel": {"post"},
        "/api/v1/messages/{message_id}/events": {"get"},
        "/api/v1/templates": {"get", "post"},
        "/api/v1/templates/{name}": {"get", "put", "patch", "delete"},
        "/api/v1/suppressions": {"get", "post"},
        "/api/v1/suppressions/{address}": {"get", "delete"},
    }.items() <= {path: set(ops) - {"parameters"} for path, ops in paths.items()}.items()


def test_every_operation_declares_its_errors_as_problems(db):
    document = APIClient().get("/api/schema/?format=json").json()
    for path, operations in document["paths"].items():
        if not path.startswith(("/api/v1/messages", "/api/v1/templates", "/api/v1/suppressions")):
            continue
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"401", "429"} <= set(responses), (method, path)
            for code, response in responses.items():
                if code.startswith("4"):
                    assert list(response["content"]) == ["application/problem+json"], (code, path)
            assert "Retry-After" in responses["429"]["headers"]
            assert operation["security"] == [{"bearerAuth": []}, {"apiKeyHeader": []}]


def test_the_docs_page_is_served_without_a_key_and_without_the_internet(db):
    page = APIClient().get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/api/schema/" in html
    assert "cdn." not in html and "jsdelivr" not in html  # Swagger UI comes from the sidecar
