"""Real Celery worker processes for integration tests, started the way production starts them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    def __init__(
        self,
        name: str,
        queues: list[str],
        *,
        env: dict[str, str],
        log_dir: Path,
        concurrency: int = 1,
        beat: bool = False,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"worker-{name}.log"
        self.command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "mailhub",
            "worker",
            "-Q",
            ",".join(queues),
            "-n",
            # Two workers of one name on one broker would fight over their control queue; the
            # control exchange carries the run's queue prefix (settings), which keeps them apart.
            f"{name}@%h",
            "-c",
            str(concurrency),
            "-l",
            "info",
            "--without-gossip",
            "--without-mingle",
        ]
        if beat:
            self.command += ["-B", "-s", str(log_dir / f"beat-{name}.schedule")]
        # Celery's pool processes ignore SIGTERM with this set, so that a TERM sent to the whole
        # process group (as stop() does) is a warm shutdown, not the death of a running task.
        self.env = {**env, "REMAP_SIGTERM": "SIGTERM"}
        self.process: subprocess.Popen | None = None

    def start(self, *, ready_timeout: float = 60.0) -> WorkerProcess:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited at start:\n{self.log_tail()}")
            if b" ready." in self.log_path.read_bytes():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"worker {self.name} not ready in {ready_timeout} s:\n{self.log_tail()}")

    def stop(self, *, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM: finish the current task), then SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once, as a crash or an OOM kill would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
