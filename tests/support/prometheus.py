"""Debian's Prometheus for tests: its programs (./scripts/bootstrap --monitoring installs them;
./scripts/test does), and a server started on a free loopback port with a configuration
generated the way `make monitoring` generates it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from monitoring.prometheus import (
    PrometheusApi,
    Targets,
    prometheus_command,
    write_local_config,
)
from tests.support.processes import ManagedProcess
from tests.support.sink import free_port


def prometheus_program(name: str) -> str:
    """The path of ``prometheus`` or ``promtool``. Missing on a Debian machine, the test fails
    and says how to install it; elsewhere (no apt-get to install it with) it is skipped."""
    path = shutil.which(name)
    if path:
        return path
    if shutil.which("apt-get"):
        pytest.fail(
            f"{name} is missing: ./scripts/bootstrap --monitoring installs Debian's prometheus"
        )
    pytest.skip(f"{name} is missing and this is not a Debian machine: install Prometheus by hand")


class PrometheusProcess(ManagedProcess):
    """Debian's ``prometheus`` scraping ``targets`` every ``scrape_interval``."""

    kind = "Prometheus"

    def __init__(
        self,
        name: str,
        *,
        targets: Targets,
        token: str,
        directory: Path,
        scrape_interval: str = "1s",
    ) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = directory / f"prometheus-{name}.log"
        config = write_local_config(
            directory, targets=targets, token=token, scrape_interval=scrape_interval
        )
        self.command = prometheus_command(
            binary=prometheus_program("prometheus"),
            config=config,
            data_dir=directory / "data",
            listen=f"127.0.0.1:{self.port}",
        )
        self.env = {"PATH": "/usr/bin:/bin", "HOME": str(directory)}
        self.api = PrometheusApi(f"http://127.0.0.1:{self.port}")

    def is_ready(self) -> bool:
        return self.api.ready()
