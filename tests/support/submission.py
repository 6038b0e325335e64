"""The SMTP submission server as a process of its own (``manage.py submission_smtp``, as the
Procfile runs it), and a self-signed certificate for its STARTTLS, made as ./scripts/start
makes one."""

from __future__ import annotations

import smtplib
import ssl
import subprocess
import sys
from pathlib import Path

from tests.support.processes import SmtpServerProcess
from tests.support.sink import free_port


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 and its key, PEM: ./scripts/start's command."""
    cert, key = directory / "submission-cert.pem", directory / "submission-key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "30", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


class SubmissionProcess(SmtpServerProcess):
    """``manage.py submission_smtp`` on a free loopback port, with TLS from ``cert``/``key``."""

    kind = "submission server"

    def __init__(
        self, name: str, *, env: dict[str, str], log_dir: Path, cert: Path, key: Path
    ) -> None:
        self.name = name
        self.port = free_port()
        self.cafile = cert
        self.log_path = log_dir / f"submission-{name}.log"
        self.command = [sys.executable, "manage.py", "submission_smtp"]
        self.env = {
            **env,
            "MAILHUB_SUBMISSION_BIND": f"127.0.0.1:{self.port}",
            "MAILHUB_SUBMISSION_TLS_CERT": str(cert),
            "MAILHUB_SUBMISSION_TLS_KEY": str(key),
        }

    def tls_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate, and nothing else."""
        return ssl.create_default_context(cafile=str(self.cafile))

    def connect(self, *, timeout: float = 30.0) -> smtplib.SMTP:
        """A connection past EHLO and STARTTLS, not yet authenticated."""
        smtp = smtplib.SMTP("127.0.0.1", self.port, timeout=timeout)
        smtp.starttls(context=self.tls_context())
        smtp.ehlo()  # the session starts anew after STARTTLS
        return smtp
