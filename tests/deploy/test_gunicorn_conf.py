"""deploy/gunicorn.conf.py: it imports, sizes the API from the CPU count, takes its overrides from
the environment, and gunicorn itself accepts it with Mailhub's application."""

from __future__ import annotations

import gc
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY
from tests.support.workers import ROOT

CONF = DEPLOY / "gunicorn.conf.py"
KNOBS = (
    "MAILHUB_BIND",
    "GUNICORN_WORKERS",
    "GUNICORN_THREADS",
    "MAILHUB_LOG_LEVEL",
    "MAILHUB_LOG_FORMAT",
)


def load(monkeypatch, **env: str) -> dict:
    for name in KNOBS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The file sets it for the server's processes; undone after the test, so that this process's
    # prometheus-client (imported later, maybe) keeps its metrics in memory.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    return runpy.run_path(str(CONF))


def test_without_overrides_it_sizes_workers_from_the_cpu_count_and_binds_loopback(monkeypatch):
    conf = load(monkeypatch)
    assert conf["workers"] == min(max(os.cpu_count() or 1, 2), 8)
    assert (conf["worker_class"], conf["threads"]) == ("gthread", 8)
    assert conf["bind"] == ["127.0.0.1:8000"]
    # Requests in flight get time to finish on SIGTERM; the stop timeouts of the systemd unit
    # and the Kubernetes pod are sized from this.
    assert 0 < conf["graceful_timeout"] < 30


def test_the_environment_overrides_bind_workers_and_threads(monkeypatch):
    conf = load(
        monkeypatch,
        MAILHUB_BIND="0.0.0.0:8000, 127.0.0.1:8001",
        GUNICORN_WORKERS="3",
        GUNICORN_THREADS="8",
    )
    assert conf["bind"] == ["0.0.0.0:8000", "127.0.0.1:8001"]
    assert (conf["workers"], conf["threads"]) == (3, 8)


@pytest.mark.parametrize("value", ["0", "many"])
def test_a_bad_worker_count_stops_gunicorn_with_the_variable_named(monkeypatch, value):
    with pytest.raises(SystemExit, match="GUNICORN_WORKERS"):
        load(monkeypatch, GUNICORN_WORKERS=value)


def test_gunicorns_own_lines_are_json_like_the_rest_when_asked(monkeypatch):
    assert "logconfig_dict" not in load(monkeypatch)
    conf = load(monkeypatch, MAILHUB_LOG_FORMAT="json", MAILHUB_LOG_LEVEL="warning")
    config = conf["logconfig_dict"]
    assert config["formatters"]["json"] == {"()": "mailhub.logs.JsonFormatter"}
    for name in ("gunicorn.access", "gunicorn.error"):
        assert config["loggers"][name]["propagate"] is False
    assert config["loggers"]["gunicorn.error"]["level"] == "WARNING"


def test_a_bad_log_format_stops_gunicorn_with_the_variable_named(monkeypatch):
    with pytest.raises(SystemExit, match="MAILHUB_LOG_FORMAT"):
        load(monkeypatch, MAILHUB_LOG_FORMAT="xml")


def test_gunicorn_accepts_the_configuration_and_loads_the_application(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "MAILHUB_BIND": "127.0.0.1:0",
        "GUNICORN_WORKERS": "1",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--check-config",
            "-c",
            str(CONF),
            "--control-socket",
            str(tmp_path / "check.ctl"),
            "mailhub.wsgi",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_before_each_fork_the_masters_objects_are_frozen_out_of_garbage_collection(monkeypatch):
    conf = load(monkeypatch)
    assert gc.get_freeze_count() == 0
    try:
        conf["pre_fork"](None, None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_each_server_adds_up_its_own_workers_request_metrics_from_a_fresh_directory(monkeypatch):
    conf = load(monkeypatch)
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert directory == conf["_METRICS_DIR"] and str(os.getpid()) in directory.name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "counter_1.db").write_bytes(b"a previous server's counts")
    try:
        conf["on_starting"](None)
        assert directory.is_dir() and list(directory.iterdir()) == []
        assert directory.stat().st_mode & 0o777 == 0o700
    finally:
        conf["on_exit"](None)
    assert not directory.exists()
