"""A child process of a test: started in its own process group, logged to a file, stopped
warmly and then completely."""

from __future__ import annotations

import contextlib
import os
import signal
import smtplib
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def as_root(command: list[str]) -> list[str]:
    """``command`` as root (through sudo when not root): rabbitmqctl, pg_ctlcluster."""
    return command if os.geteuid() == 0 else ["sudo", "-n", *command]


class ManagedProcess:
    """Subclasses set ``name``, ``command``, ``env``, ``log_path`` and say when they are ready."""

    kind = "process"
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None

    def is_ready(self) -> bool:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        """The started process's id (its group's too)."""
        if self.process is None:
            raise RuntimeError(f"{self.kind} {self.name} has not been started")
        return self.process.pid

    def start(self, *, ready_timeout: float = 60.0):
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
                raise RuntimeError(f"{self.kind} {self.name} exited at start:\n{self.log_tail()}")
            if self.is_ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"{self.kind} {self.name} not ready in {ready_timeout} s:\n{self.log_tail()}"
        )

    def stop(self, *, timeout: float = 20.0) -> None:
        """Warm stop (SIGTERM to the group: work in flight finishes), then SIGKILL if it hangs.

        Whatever of the group is left afterwards is killed: a Celery worker's embedded beat
        ignores SIGTERM under REMAP_SIGTERM and would otherwise outlive its worker.
        """
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash or an OOM kill would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class SmtpServerProcess(ManagedProcess):
    """A process that serves SMTP on ``port`` of loopback: ready once it answers NOOP."""

    port: int

    def is_ready(self) -> bool:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=2) as smtp:
                smtp.noop()
            return True
        except (OSError, smtplib.SMTPException):
            return False
