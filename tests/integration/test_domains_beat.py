"""The periodic re-verification on the real stack: beat in a real worker process sends the tick to
the dispatch queue, the worker asks the test's DNS server, and a verified domain whose records
disappear turns `failing`, then `suspended` when its grace period is over."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.conf import settings

from domains.models import SendingDomain
from domains.selectors import domain_records
from domains.services import domain_create, domain_verify
from tests.integration.conftest import wait_until, worker_log_dir
from tests.support.workers import WorkerProcess, database_url, delete_queues

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

GRACE_SECONDS = 3


@pytest.fixture(scope="module")
def beat_worker(dns_server, django_db_setup, django_db_blocker) -> Iterator[WorkerProcess]:
    host, port = dns_server.address
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "PYTHONUNBUFFERED": "1",
        "MAILHUB_DNS_RESOLVERS": f"{host}:{port}",
        "MAILHUB_DNS_TIMEOUT_SECONDS": "5",
        "MAILHUB_DOMAIN_VERIFY_INTERVAL_SECONDS": "1",
        "MAILHUB_DOMAIN_GRACE_SECONDS": str(GRACE_SECONDS),
    }
    worker = WorkerProcess(
        "domains-beat",
        [settings.MAILHUB_DISPATCH_QUEUE],
        env=env,
        log_dir=worker_log_dir(),
        beat=True,
    )
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        delete_queues(settings.MAILHUB_QUEUE_PREFIX)


def test_records_gone_make_a_verified_domain_fail_then_suspend(
    beat_worker, dns_server, acme, settings
):
    settings.MAILHUB_DNS_RESOLVERS = [dns_server.address]
    dns_server.clear()
    domain = domain_create(client=acme.client, domain="shop.test")
    for record in domain_records(domain=domain):
        if record.publisher == "client":
            dns_server.txt(record.name, record.value)
    assert domain_verify(domain_id=domain.id).state == "verified"

    dns_server.clear()  # the records are gone

    def state() -> str:
        return SendingDomain.objects.get(id=domain.id).state

    wait_until(lambda: state() == "failing", timeout=60, what="the beat to find the records gone")
    assert SendingDomain.objects.get(id=domain.id).failing_since is not None
    wait_until(lambda: state() == "suspended", timeout=60, what="the grace period to end")
    log = beat_worker.log_path.read_text()
    assert "sending domain shop.test of client" in log and "failing -> suspended" in log
