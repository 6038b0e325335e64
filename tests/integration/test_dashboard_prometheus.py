"""The dashboard against a running Prometheus: Debian's prometheus, configured as `make
monitoring` configures it, scrapes a real stack (the API under gunicorn with two worker
processes, Flower, the Celery workers, the SMTP sink) every second while mail goes through, and
every query of every panel of deploy/grafana/mailhub-dashboard.json then returns data."""

from __future__ import annotations

import http.client
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitoring.dashboard import panels
from monitoring.prometheus import Targets
from tests.builders import make_actor, message_payload
from tests.integration.conftest import wait_until_final, worker_env, worker_log_dir
from tests.support.api_server import ApiServer, post_json
from tests.support.flower import FlowerProcess
from tests.support.prometheus import PrometheusProcess

pytestmark = pytest.mark.integration

TOKEN = "scraper-token-for-the-dashboard-test"


@dataclass
class MonitoredStack:
    api: ApiServer
    flower: FlowerProcess
    prometheus: PrometheusProcess


@pytest.fixture(scope="module")
def monitored(mail_stack, tmp_path_factory) -> Iterator[MonitoredStack]:
    log_dir = worker_log_dir()
    env = worker_env(
        mail_stack,
        MAILHUB_METRICS_TOKEN=TOKEN,
        MAILHUB_METRICS_LAG_SECONDS="0",  # count what was delivered a moment ago
        FLOWER_BASIC_AUTH="admin:flower-password-for-tests",
    )
    started = []
    try:
        api = ApiServer("dashboard", env=env, log_dir=log_dir, workers=2, threads=4).start()
        started.append(api)
        flower = FlowerProcess("dashboard", env=env, log_dir=log_dir).start(ready_timeout=30)
        started.append(flower)
        prometheus = PrometheusProcess(
            "dashboard",
            targets=Targets(web=f"127.0.0.1:{api.port}", flower=f"127.0.0.1:{flower.port}"),
            token=TOKEN,
            directory=tmp_path_factory.mktemp("prometheus"),
        ).start(ready_timeout=30)
        started.append(prometheus)
        yield MonitoredStack(api, flower, prometheus)
    finally:
        for process in reversed(started):
            process.stop()


def send_mail(stack: MonitoredStack, key: str, count: int) -> list[uuid.UUID]:
    connection = stack.api.connect()
    try:
        ids = []
        for index in range(count):
            status, body = post_json(
                connection,
                "/api/v1/messages",
                message_payload(to=[f"user{index}@example.com"], priority="high"),
                key=key,
            )
            assert status == 202, body
            ids.append(uuid.UUID(body["id"]))
        return ids
    finally:
        connection.close()


def scrape_http_metrics(stack: MonitoredStack) -> dict[tuple[str, tuple], float]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.api.port}/metrics/http",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_every_dashboard_query_returns_data_from_prometheus(monitored, sink):
    acme = make_actor("acme")
    for message_id in send_mail(monitored, acme.key, 6):
        wait_until_final(message_id)
    api = monitored.prometheus.api
    queries = [(panel.title, query.expr) for panel in panels() for query in panel.queries]

    # A rate() needs two scrapes that saw its series, Flower's runtimes a task that Flower saw
    # finish: asked again until every query has data, or 45 s have passed.
    deadline = time.monotonic() + 45
    while True:
        empty = [f"{title}: {expr}" for title, expr in queries if not api.query(expr)]
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert empty == []
    targets = {(t["labels"]["job"], t["health"]) for t in api.targets()}
    assert targets == {("mailhub", "up"), ("mailhub-http", "up"), ("mailhub-flower", "up")}


def test_the_api_counts_every_request_whichever_worker_process_served_it(monitored, sink):
    acme = make_actor("acme")
    route = ("route", "message-collection")
    before = scrape_http_metrics(monitored)

    send_mail(monitored, acme.key, 12)

    def posted(samples) -> float:
        return sum(
            value
            for (name, labels), value in samples.items()
            if name == "mailhub_http_requests_total"
            and route in labels
            and ("method", "POST") in labels
        )

    # The twelve requests, on one kept-alive connection, were served by one worker process;
    # each scrape, on a connection of its own, reaches either. Every one reports all twelve.
    counts = {posted(scrape_http_metrics(monitored)) - posted(before) for _ in range(8)}
    assert counts == {12.0}


def test_a_scraper_without_the_token_gets_nothing_from_any_metrics_path(monitored):
    for path in ("/metrics", "/metrics/http"):
        connection = http.client.HTTPConnection("127.0.0.1", monitored.api.port, timeout=10)
        try:
            connection.request("GET", path, headers={"Host": "10.0.0.7:8000"})
            response = connection.getresponse()
            assert (response.status, b"mailhub_" in response.read()) == (401, False), path
        finally:
            connection.close()
