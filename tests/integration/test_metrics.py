"""/healthz, /readyz and /metrics against the real Postgres, RabbitMQ and Celery workers."""

from __future__ import annotations

import pytest
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from tests.builders import message_payload
from tests.integration.conftest import wait_until_final
from tests.support.sink import free_port

pytestmark = pytest.mark.integration


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    """The sum of the samples of ``name`` that carry ``labels`` (whatever their other labels:
    the per-client counters split each priority by client)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= set(have))


def test_healthz_answers_without_touching_anything_even_for_an_unknown_host(client):
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8000")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_when_postgres_rabbitmq_and_migrations_are_fine(client, db):
    response = client.get("/readyz")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "broker": True,
        "migrations": True,
    }


def test_readyz_is_503_naming_the_broker_when_rabbitmq_is_unreachable(client, db):
    closed = free_port()  # bound and released: nothing listens there
    with override_settings(CELERY_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{closed}//"):
        response = client.get("/readyz")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["broker"]["ok"] is False and "refused" in checks["broker"]["detail"].lower()
    assert checks["database"]["ok"] is True


def test_readyz_is_200_while_one_node_of_a_broker_cluster_is_down(client, db, settings):
    """CELERY_BROKER_URL may list a cluster's nodes (`;`): the probe tries each once, so the
    loss of one node (the first, here) does not take every API instance out of service."""
    closed = free_port()
    down = f"amqp://guest:guest@127.0.0.1:{closed}//"
    with override_settings(CELERY_BROKER_URL=f"{down};{settings.CELERY_BROKER_URL}"):
        ready = client.get("/readyz")
    with override_settings(CELERY_BROKER_URL=f"{down};{down}"):
        none_up = client.get("/readyz")

    assert ready.status_code == 200, ready.content
    assert none_up.status_code == 503
    assert none_up.json()["checks"]["broker"]["ok"] is False


def test_metrics_parse_and_name_every_family(client, db):
    samples = scrape(client)
    names = {name for name, _ in samples}

    for expected in [
        "mailhub_messages_accepted_total",
        "mailhub_delivery_events_total",
        "mailhub_smtp_attempts_total",
        "mailhub_delivery_latency_seconds_bucket",
        "mailhub_delivery_latency_seconds_count",
        "mailhub_deliveries_waiting",
        "mailhub_oldest_waiting_seconds",
        "mailhub_broker_up",
        "mailhub_queue_messages",
        "mailhub_queue_consumers",
        "mailhub_workers",
        "mailhub_sending_domains",
    ]:
        assert expected in names, expected
    assert value(samples, "mailhub_broker_up") == 1.0


def test_metrics_need_the_token_when_one_is_set(client, db):
    with override_settings(MAILHUB_METRICS_TOKEN="s3cret-scraper"):
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scraper").status_code == 200


@override_settings(MAILHUB_METRICS_LAG_SECONDS=0)
def test_metrics_move_when_mail_is_sent(client, sink, acme):
    before = scrape(client)
    response = acme.api.post("/api/v1/messages", message_payload(priority="high"), format="json")
    assert response.status_code == 202
    wait_until_final(response.json()["id"])
    sink.wait_for(1)

    after = scrape(client)

    def moved(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("mailhub_messages_accepted_total", priority="high") == 1
    assert moved("mailhub_delivery_events_total", type="accepted", priority="high") == 1
    assert moved("mailhub_delivery_events_total", type="delivered", priority="high") == 1
    assert moved("mailhub_smtp_attempts_total", smtp_class="2xx") == 1
    assert moved("mailhub_delivery_latency_seconds_count") == 1
    assert moved("mailhub_delivery_latency_seconds_bucket", le="+Inf") == 1
    assert moved("mailhub_delivery_latency_seconds_sum") > 0
    # Both test workers consume mail.high; they answer the pool-state broadcast.
    assert value(after, "mailhub_workers") >= 2
    high_queue = [
        k for k in after if k[0] == "mailhub_queue_consumers" and ("priority", "high") in k[1]
    ]
    assert high_queue and after[high_queue[0]] >= 2
    pools = [v for (name, _), v in after.items() if name == "mailhub_worker_pool_processes"]
    assert sum(pools) >= 3  # 1 + 2 processes
