"""The systemd units: `systemd-analyze verify` accepts them (installed at the checkout's path),
and they stop gracefully, restart, and run every queue's pool."""

from __future__ import annotations

import configparser
import shutil
import subprocess

import pytest
from django.conf import settings

from tests.deploy.conftest import DEPLOY, consumed_queues
from tests.support.workers import ROOT

SYSTEMD = DEPLOY / "systemd"
INSTALL_PREFIX = "/opt/mailhub"
POOLS = ("high", "general", "webhooks")


class _UnitParser(configparser.RawConfigParser):
    def optionxform(self, optionstr: str) -> str:
        return optionstr  # systemd keys are case-sensitive


def unit(name: str) -> configparser.RawConfigParser:
    parser = _UnitParser(strict=False, interpolation=None)
    parser.read_string((SYSTEMD / name).read_text())
    return parser


def seconds(value: str) -> float:
    return float(value.removesuffix("s"))


def test_systemd_analyze_verifies_every_unit(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed on this machine: units not verified")
    # The units name /opt/mailhub; verify checks that ExecStart's programs exist, so they are
    # verified as installed at this checkout (whose .venv has gunicorn and celery).
    for path in SYSTEMD.glob("mailhub*"):
        (tmp_path / path.name).write_text(path.read_text().replace(INSTALL_PREFIX, str(ROOT)))
    names = sorted(p.name for p in tmp_path.iterdir() if "@" not in p.name)
    names += [f"mailhub-worker@{pool}.service" for pool in POOLS]
    result = subprocess.run(
        ["systemd-analyze", "verify", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # Unknown keys and unparsable values are only warnings to verify; here they are failures.
    complaints = [line for line in result.stderr.splitlines() if "mailhub" in line]
    assert complaints == []


def test_each_pool_has_an_environment_file_and_together_they_consume_every_queue(queues):
    consumed = {}
    for pool in POOLS:
        values = dict(
            line.split("=", 1)
            for line in (SYSTEMD / f"worker-{pool}.env").read_text().splitlines()
            if line and not line.startswith("#")
        )
        consumed[pool] = consumed_queues(["-Q", values["MAILHUB_WORKER_QUEUES"]])
        assert int(values["MAILHUB_WORKER_CONCURRENCY"]) >= 1
    assert set().union(*consumed.values()) == set(queues)
    assert consumed["high"] == {"mail.high", "mailhub.dispatch"}
    assert consumed["webhooks"] == {"webhooks", "webhooks.tick"}
    assert "webhooks.tick" in consumed["general"]
    service = unit("mailhub-worker@.service")["Service"]
    assert "-n %i@%H" in service["ExecStart"]
    assert "-Q ${MAILHUB_WORKER_QUEUES}" in service["ExecStart"]


def test_workers_and_the_api_stop_warm_before_they_are_killed():
    worker = unit("mailhub-worker@.service")["Service"]
    # SIGTERM to the main process only: Celery's warm shutdown, children finish their task.
    assert (worker["KillMode"], worker["KillSignal"]) == ("mixed", "SIGTERM")
    assert seconds(worker["TimeoutStopSec"]) > settings.MAILHUB_SMTP_DATA_TIMEOUT_SECONDS
    assert worker["Restart"] == "always"
    web = unit("mailhub-web.service")["Service"]
    assert (web["KillMode"], web["Type"]) == ("mixed", "notify")
    assert seconds(web["TimeoutStopSec"]) > 20  # gunicorn's graceful_timeout
    assert web["Restart"] == "on-failure"
    assert "deploy/gunicorn.conf.py" in web["ExecStart"]


def test_every_service_belongs_to_the_target_and_reads_the_shared_environment():
    services = sorted(set(SYSTEMD.glob("mailhub*.service")) - {SYSTEMD / "mailhub-purge.service"})
    assert {p.name for p in services} == {
        "mailhub-web.service",
        "mailhub-worker@.service",
        "mailhub-beat.service",
        "mailhub-flower.service",
        "mailhub-submission.service",
        "mailhub-bounces.service",
    }
    for path in services:
        parsed = unit(path.name)
        assert parsed["Unit"]["PartOf"] == "mailhub.target", path.name
        assert parsed["Install"]["WantedBy"] == "mailhub.target", path.name
        assert parsed["Service"]["User"] == "mailhub", path.name
        assert "/etc/mailhub/mailhub.env" in (SYSTEMD / path.name).read_text()
    flower = unit("mailhub-flower.service")["Service"]
    assert "FLOWER_BASIC_AUTH" in flower["ExecStartPre"]
    beat = unit("mailhub-beat.service")["Service"]
    assert " beat " in beat["ExecStart"] and "/var/lib/mailhub/" in beat["ExecStart"]


def test_old_mail_is_purged_daily_by_a_timer_that_catches_up_after_downtime():
    timer = unit("mailhub-purge.timer")
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["OnCalendar"]
    service = unit("mailhub-purge.service")["Service"]
    assert service["Type"] == "oneshot"
    assert "manage.py purge --older-than 30d" in service["ExecStart"]


def test_the_bounces_server_binds_25_with_one_capability_and_lets_reports_finish():
    service = unit("mailhub-bounces.service")["Service"]
    assert service["ExecStart"].endswith("manage.py bounces_smtp")
    assert service["Environment"] == "MAILHUB_BOUNCES_BIND=0.0.0.0:25"
    assert service["AmbientCapabilities"] == service["CapabilityBoundingSet"]
    assert service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    # api.bounces.DRAIN_SECONDS for the reports being applied, then a margin.
    assert seconds(service["TimeoutStopSec"]) > 20
    assert service["Restart"] == "always"


def test_smtp_submission_binds_587_with_one_capability_and_lets_messages_finish():
    service = unit("mailhub-submission.service")["Service"]
    assert service["ExecStart"].endswith("manage.py submission_smtp")
    assert service["Environment"] == "MAILHUB_SUBMISSION_BIND=0.0.0.0:587"
    assert service["AmbientCapabilities"] == service["CapabilityBoundingSet"]
    assert service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    # api.submission.DRAIN_SECONDS for the messages being stored, then a margin.
    assert seconds(service["TimeoutStopSec"]) > 20
    assert service["Restart"] == "always"
