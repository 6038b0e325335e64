"""Who may read metrics, and what a scrape costs: Mailhub's /metrics and Flower's /metrics both
answer only with `Authorization: Bearer <MAILHUB_METRICS_TOKEN>` (Flower's also with its own
login), a refused request costs nothing, and an allowed scrape stays well under a second."""

from __future__ import annotations

import base64
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import worker_log_dir
from tests.support.flower import FlowerProcess

pytestmark = pytest.mark.integration

TOKEN = "scraper-token-for-tests"
FLOWER_LOGIN = "admin:flower-password-for-tests"


@pytest.fixture
def token_required():
    with override_settings(MAILHUB_METRICS_TOKEN=TOKEN):
        yield


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer wrong", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN],
)
def test_metrics_without_the_token_are_refused_before_any_work(
    client, db, token_required, django_assert_num_queries, authorization
):
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    started = time.monotonic()
    with django_assert_num_queries(0):
        response = client.get("/metrics", **headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in response.content.decode()
    assert time.monotonic() - started < 0.2  # no broadcast to the workers, no broker connection


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_metrics_with_the_token_are_served_whatever_the_schemes_case(
    client, db, token_required, scheme
):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"{scheme} {TOKEN}")
    assert response.status_code == 200
    assert b"mailhub_broker_up" in response.content


def test_a_scrape_costs_well_under_a_second_and_still_hears_every_worker(client, sink):
    client.get("/metrics")  # the first scrape of a process also counts the day so far

    started = time.monotonic()
    response = client.get("/metrics")
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    workers = [
        sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
        if sample.name == "mailhub_workers"
    ]
    assert workers == [2.0]  # the stack's two workers answered the broadcast
    assert elapsed < 0.75, f"a scrape took {elapsed:.2f} s"


# -- Flower ----------------------------------------------------------------------------------------


def get(url: str, authorization: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def flower(django_db_setup) -> Iterator[str]:
    """Flower started as the Procfile starts it, on a free loopback port."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "FLOWER_BASIC_AUTH": FLOWER_LOGIN,
        "MAILHUB_METRICS_TOKEN": TOKEN,
    }
    process = FlowerProcess("auth", env=env, log_dir=worker_log_dir()).start(ready_timeout=30)
    try:
        yield process.url
    finally:
        process.stop()


def basic(login: str) -> str:
    return "Basic " + base64.b64encode(login.encode()).decode()


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Bearer {TOKEN}x", basic("admin:wrong"), f"Basic {TOKEN}"],
)
def test_flowers_metrics_are_refused_without_the_token_or_flowers_login(flower, authorization):
    status, body = get(f"{flower}/metrics", authorization)
    assert status == 401
    assert b"flower_" not in body


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", basic(FLOWER_LOGIN)])
def test_flowers_metrics_are_served_with_the_token_or_flowers_login(flower, authorization):
    status, body = get(f"{flower}/metrics", authorization)
    assert status == 200
    assert b"flower_events_total" in body or b"flower_worker_online" in body or b"# HELP" in body


def test_the_metrics_token_opens_no_other_flower_page(flower):
    assert get(f"{flower}/", f"Bearer {TOKEN}")[0] == 401
    assert get(f"{flower}/api/workers", f"Bearer {TOKEN}")[0] == 401
    assert get(f"{flower}/", basic(FLOWER_LOGIN))[0] == 200
