"""What the API answers when it fails: never an HTML page. An unhandled exception is a 500
problem carrying the request's id, and the log line with the traceback carries the same id;
Django's own 400 and 404 under /api/ are problems too. Every request has an id (the client's
X-Request-ID when it is of sane form), echoed in the answer."""

from __future__ import annotations

import logging
import re

import pytest
from rest_framework.test import APIClient

from tests.integration.test_api_input import assert_problem

pytestmark = pytest.mark.integration

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


class ExplodingMiddleware:
    """Fails outside any view, where only Django's handler500 can answer."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        raise RuntimeError("exploded in a middleware")


@pytest.fixture
def failing_view(monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("exploded in a view")

    monkeypatch.setattr("api.views.templates_for_client", explode)


def answer_500(response, caplog) -> str:
    """The request id of a 500 problem, after checking it is the one logged with the trace."""
    body = assert_problem(response, status=500, code="internal_error")
    request_id = body["request_id"]
    assert response["X-Request-ID"] == request_id
    logged = [r for r in caplog.records if r.exc_info and request_id in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in caplog.records]
    assert logged[0].levelno == logging.ERROR
    assert response.content.decode().count("exploded") == 0  # the trace stays in the log
    return request_id


def test_an_exception_in_a_view_is_a_500_problem_with_the_request_id_logged(
    acme, failing_view, caplog
):
    acme.api.raise_request_exception = False
    response = acme.api.get("/api/v1/templates")
    assert GENERATED_ID.match(answer_500(response, caplog))


def test_an_exception_in_a_view_is_a_problem_even_with_debug_on(
    acme, failing_view, caplog, settings
):
    settings.DEBUG = True
    acme.api.raise_request_exception = False
    answer_500(acme.api.get("/api/v1/templates"), caplog)


def test_an_exception_outside_any_view_is_a_500_problem_under_api(settings, caplog, db):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}.ExplodingMiddleware"]
    api = APIClient(raise_request_exception=False)
    answer_500(api.get("/api/v1/templates", HTTP_X_REQUEST_ID="trace-42"), caplog)
    page = api.get("/admin/")
    assert page.status_code == 500
    assert not page["Content-Type"].startswith("application/problem+json")


def test_a_sane_request_id_from_the_client_is_used_and_echoed(acme, failing_view, caplog):
    acme.api.raise_request_exception = False
    response = acme.api.get("/api/v1/templates", HTTP_X_REQUEST_ID="7f3a-Trace.id:1/2+3=")
    assert answer_500(response, caplog) == "7f3a-Trace.id:1/2+3="
    assert acme.api.get("/api/v1/messages", HTTP_X_REQUEST_ID="abc")["X-Request-ID"] == "abc"


@pytest.mark.parametrize(
    "offered",
    ["", " ", "a b", "a\tb", "x" * 129, "é", "a\u2028b", "-leading-dash", "a;b", "<script>"],
)
def test_a_request_id_of_any_other_form_is_replaced(acme, offered):
    response = acme.api.get("/api/v1/messages", HTTP_X_REQUEST_ID=offered)
    assert response.status_code == 200
    assert GENERATED_ID.match(response["X-Request-ID"])


def test_every_answer_has_a_request_id(acme, db):
    for response in (
        acme.api.get("/api/v1/messages"),
        APIClient().get("/api/v1/messages"),
        acme.api.get("/api/v1/nowhere"),
    ):
        assert GENERATED_ID.match(response["X-Request-ID"]), response


def test_a_host_django_refuses_is_a_400_problem(acme):
    response = acme.api.get("/api/v1/messages", HTTP_HOST="evil.test")
    assert_problem(response, status=400, code="bad_request")


def test_too_many_query_parameters_is_a_400_problem(acme):
    query = "&".join(f"p{i}=1" for i in range(1500))
    assert_problem(acme.api.get(f"/api/v1/messages?{query}"), status=400, code="bad_request")


def test_an_unknown_path_under_api_is_a_404_problem(acme):
    for url in ("/api/v1/nowhere", "/api/v1/messages/not-a-uuid", "/api/v2/messages", "/api/"):
        assert_problem(acme.api.get(url), status=404, code="not_found")
