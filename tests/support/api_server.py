"""A real API process for tests: gunicorn with deploy/gunicorn.conf.py, as production runs it."""

from __future__ import annotations

import http.client
import json
import sys
from pathlib import Path

from tests.support.processes import ROOT, ManagedProcess
from tests.support.sink import free_port

GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"


class ApiServer(ManagedProcess):
    """``gunicorn mailhub.wsgi -c deploy/gunicorn.conf.py`` on a free loopback port.

    The configuration file is the production one; only its environment knobs (bind address,
    worker and thread counts) and the control socket's path differ, so that several servers
    from one checkout can run side by side.
    """

    kind = "API"

    def __init__(
        self,
        name: str,
        *,
        env: dict[str, str],
        log_dir: Path,
        workers: int | None = 1,
        threads: int | None = 4,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = log_dir / f"api-{name}.log"
        self.command = [
            sys.executable,
            "-m",
            "gunicorn",
            "mailhub.wsgi",
            "-c",
            str(GUNICORN_CONF),
            "--control-socket",
            str(log_dir / f"api-{name}.ctl"),
        ]
        # None leaves the count to gunicorn.conf.py: the production sizing from the CPU count.
        sizing = {"GUNICORN_WORKERS": workers, "GUNICORN_THREADS": threads}
        self.env = {
            **{name: value for name, value in env.items() if name not in sizing},
            "MAILHUB_BIND": f"127.0.0.1:{self.port}",
            **{name: str(value) for name, value in sizing.items() if value is not None},
        }

    def is_ready(self) -> bool:
        # Any HTTP answer (a 401 without a key) shows that a worker has loaded Django.
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", "/api/v1/messages")
            connection.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            connection.close()

    def connect(self, *, timeout: float = 30.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def requests_served(self, method: str, path: str) -> int:
        """How many requests the access log shows for ``method path``."""
        needle = f'"{method} {path} '
        return self.log_path.read_text(errors="replace").count(needle)


def post_json(
    connection: http.client.HTTPConnection, path: str, body: dict, *, key: str
) -> tuple[int, dict]:
    """POST ``body`` as JSON on a kept-alive connection; return the status and the JSON answer."""
    connection.request(
        "POST",
        path,
        body=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {key}",
            "Host": "127.0.0.1",
        },
    )
    response = connection.getresponse()
    payload = response.read()
    return response.status, json.loads(payload) if payload else {}
