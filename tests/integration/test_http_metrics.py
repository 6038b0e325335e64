"""GET /metrics/http: every request counted and timed by the name of the route that answered,
its method and its status class, with labels that stay few whatever clients send."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.test import override_settings
from django.urls import URLResolver, get_resolver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from mailhub.http_metrics import METHODS, UNRESOLVED
from tests.builders import message_payload

pytestmark = pytest.mark.integration

REQUESTS = "mailhub_http_requests_total"
DURATION_COUNT = "mailhub_http_request_duration_seconds_count"


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics/http")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def moved(before, after, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_a_request_is_counted_under_its_routes_name_never_its_path(client, acme):
    before = scrape(client)

    response = acme.api.post("/api/v1/messages", message_payload(), format="json")
    assert response.status_code == 202
    message = response.json()["id"]
    assert acme.api.get(f"/api/v1/messages/{message}").status_code == 200
    assert client.get("/api/v1/messages").status_code == 401  # no key
    after = scrape(client)

    post = {"route": "message-collection", "method": "POST"}
    assert moved(before, after, REQUESTS, **post, status_class="2xx") == 1
    assert (
        moved(before, after, REQUESTS, route="message-detail", method="GET", status_class="2xx")
        == 1
    )
    assert moved(
        before, after, REQUESTS, route="message-collection", method="GET", status_class="4xx"
    )
    assert moved(before, after, DURATION_COUNT, **post) == 1
    assert not any(message in str(labels) for _, labels in after)


def test_a_path_no_route_matches_and_an_invented_method_get_one_label_each(client, db):
    before = scrape(client)

    assert client.get("/api/v1/no-such-thing/123").status_code == 404
    assert client.generic("BREW", "/api/v1/messages").status_code in (401, 405)
    after = scrape(client)

    assert moved(before, after, REQUESTS, route=UNRESOLVED, method="GET", status_class="4xx") == 1
    brewed = {
        labels: value - before.get((name, labels), 0.0)
        for (name, labels), value in after.items()
        if name == REQUESTS and ("method", "other") in labels
    }
    assert sum(brewed.values()) == 1


def route_names(patterns=None, namespace: str = "") -> set[str]:
    """Every route label the URLconf can produce: each pattern's namespaced name (or, unnamed,
    its view's dotted path)."""
    names = set()
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            names |= route_names(pattern.url_patterns, inner)
        elif pattern.name:
            names.add(namespace + pattern.name)
        else:
            names.add(pattern.lookup_str)
    return names


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    segment=st.text(st.characters(codec="utf-8"), max_size=40),
    method=st.sampled_from(["GET", "POST", "DELETE"])
    | st.from_regex(r"[A-Za-z]{1,12}", fullmatch=True),
)
def test_whatever_the_path_and_method_the_labels_stay_within_the_routes(
    client, db, segment, method
):
    client.generic(method, "/api/v1/messages/" + quote(segment, safe=""))

    labels = [dict(labels) for name, labels in scrape(client) if name == REQUESTS]

    assert {label["route"] for label in labels} <= route_names() | {UNRESOLVED}
    assert {label["method"] for label in labels} <= METHODS | {"other"}
    assert {label["status_class"] for label in labels} <= {"1xx", "2xx", "3xx", "4xx", "5xx"}


@override_settings(MAILHUB_METRICS_TOKEN="s3cret-scraper")
def test_the_http_metrics_want_the_same_token_as_metrics(client, db):
    assert client.get("/metrics/http").status_code == 401
    assert client.get("/metrics/http", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    response = client.get("/metrics/http", HTTP_AUTHORIZATION="Bearer s3cret-scraper")
    assert response.status_code == 200
    assert b"mailhub_http_requests_total" in response.content


@pytest.mark.parametrize("path", ["/metrics", "/metrics/http"])
def test_scrapers_addressing_an_instance_by_ip_are_answered_whatever_allowed_hosts_says(
    client, db, path
):
    # Prometheus finds every web instance by service discovery and asks each by its address.
    with override_settings(MAILHUB_METRICS_TOKEN="s3cret-scraper", ALLOWED_HOSTS=["mail.test"]):
        refused = client.get(path, HTTP_HOST="10.1.2.3:8000")
        answered = client.get(
            path, HTTP_HOST="10.1.2.3:8000", HTTP_AUTHORIZATION="Bearer s3cret-scraper"
        )
        api = client.get("/api/v1/messages", HTTP_HOST="10.1.2.3:8000")

    assert refused.status_code == 401
    assert answered.status_code == 200 and b"# HELP" in answered.content
    assert api.status_code == 400  # everything else still wants an allowed host
