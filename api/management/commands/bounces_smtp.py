"""Runs the bounces server (``api.bounces``) until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from api.bounces import BouncesController, bounces_config


class Command(BaseCommand):
    help = (
        "Run the bounces SMTP server: bounce reports (DSNs) and complaints (ARF) sent to "
        "MAILHUB_BOUNCE_DOMAIN bounce or suppress the delivery their VERP token names. "
        "Listens on MAILHUB_BOUNCES_BIND."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        host, port = settings.MAILHUB_BOUNCES_BIND
        parser.add_argument("--host", default=host)
        parser.add_argument("--port", type=int, default=port)

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            # aiosmtpd logs every command line of every session at INFO.
            logging.getLogger("mail.log").setLevel(logging.WARNING)
        config = bounces_config(host=host, port=port)
        controller = BouncesController(config)
        controller.start()
        if config.bounce_domain:
            self.stdout.write(f"bounces SMTP server on {host}:{port}, for @{config.bounce_domain}")
        else:
            # Still running: under honcho one process that exits stops them all.
            self.stdout.write(
                f"bounces SMTP server on {host}:{port}: MAILHUB_BOUNCE_DOMAIN is empty, so "
                "mail is sent without VERP and every recipient here is refused"
            )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
        controller.stop_gracefully()
