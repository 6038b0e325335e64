"""Runs the SMTP submission server (``api.submission``) until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from api.submission import SubmissionController, submission_config, tls_context


class Command(BaseCommand):
    help = (
        "Run the SMTP submission server: clients authenticate with an API key (AUTH PLAIN or "
        "LOGIN, after STARTTLS) and each message they submit becomes a Mailhub message. "
        "Listens on MAILHUB_SUBMISSION_BIND."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        host, port = settings.MAILHUB_SUBMISSION_BIND
        parser.add_argument("--host", default=host)
        parser.add_argument("--port", type=int, default=port)

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        cert, key = settings.MAILHUB_SUBMISSION_TLS_CERT, settings.MAILHUB_SUBMISSION_TLS_KEY
        if cert:
            for name, path in (
                ("MAILHUB_SUBMISSION_TLS_CERT", cert),
                ("MAILHUB_SUBMISSION_TLS_KEY", key),
            ):
                if not Path(path).is_file():
                    raise CommandError(f"{name}: no such file: {path}")
            try:
                context = tls_context(cert=cert, key=key)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise CommandError(f"cannot load the TLS certificate and key: {exc}") from None
        elif settings.MAILHUB_SUBMISSION_ALLOW_PLAINTEXT_LOOPBACK:
            context = None
        else:
            raise CommandError(
                "set MAILHUB_SUBMISSION_TLS_CERT and MAILHUB_SUBMISSION_TLS_KEY (PEM files): "
                "clients send their API key only over TLS (./scripts/start makes a "
                "self-signed pair in var/)"
            )
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            # aiosmtpd logs every command line of every session at INFO.
            logging.getLogger("mail.log").setLevel(logging.WARNING)
        config = submission_config(host=host, port=port, tls_context=context)
        controller = SubmissionController(config)
        controller.start()
        tls = "STARTTLS" if context else "no TLS: AUTH from loopback only"
        self.stdout.write(f"SMTP submission server on {host}:{port} ({tls})")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
        controller.stop_gracefully()
