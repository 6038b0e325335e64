"""Flower for tests, started as the Procfile starts it (``--conf=deploy/flowerconfig.py``), on a
free loopback port."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.processes import ManagedProcess
from tests.support.sink import free_port


class FlowerProcess(ManagedProcess):
    kind = "Flower"

    def __init__(self, name: str, *, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"flower-{name}.log"
        self.command = [sys.executable, "-m", "celery", "-A", "mailhub", "flower"]
        self.command += ["--conf=deploy/flowerconfig.py", "--address=127.0.0.1"]
        self.command += [f"--port={self.port}"]
        self.env = env

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthcheck", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False
