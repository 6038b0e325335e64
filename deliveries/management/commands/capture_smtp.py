import signal
import threading
from pathlib import Path

from aiosmtpd.controller import Controller
from django.conf import settings
from django.core.management.base import BaseCommand

from deliveries.capture import CaptureHandler


class Command(BaseCommand):
    help = (
        "Run the capture SMTP server: every message it receives is saved as a .eml file "
        "(default folder: MAILHUB_CAPTURE_DIR). Nothing is relayed anywhere."
    )

    def add_arguments(self, parser):
        relay = settings.MAILHUB_SMTP
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=relay.port)
        parser.add_argument("--dir", type=Path, default=settings.MAILHUB_CAPTURE_DIR)

    def handle(self, *args, host: str, port: int, dir: Path, **options):
        controller = Controller(CaptureHandler(dir), hostname=host, port=port)
        controller.start()
        self.stdout.write(f"capture SMTP server on {host}:{port}, saving to {dir}")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
        controller.stop()
