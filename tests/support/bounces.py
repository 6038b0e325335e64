"""The bounces server as a process of its own (``manage.py bounces_smtp``, as the Procfile runs
it), and the reports the tests send it."""

from __future__ import annotations

import smtplib
import sys
from pathlib import Path

from deliveries.tokens import verp_address
from tests.support.processes import SmtpServerProcess
from tests.support.sink import free_port

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "bounces"
#: The token's place in the samples of tests/data/bounces/.
PLACEHOLDER = "bounce+VERPTOKEN@bounces.example.com"


class BouncesProcess(SmtpServerProcess):
    """``manage.py bounces_smtp`` on a free loopback port, for ``bounce_domain``."""

    kind = "bounces server"

    def __init__(
        self,
        name: str,
        *,
        env: dict[str, str],
        log_dir: Path,
        bounce_domain: str,
        max_message_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.bounce_domain = bounce_domain
        self.log_path = log_dir / f"bounces-{name}.log"
        self.command = [sys.executable, "manage.py", "bounces_smtp"]
        self.env = {
            **env,
            "MAILHUB_BOUNCE_DOMAIN": bounce_domain,
            "MAILHUB_BOUNCES_BIND": f"127.0.0.1:{self.port}",
            "MAILHUB_BOUNCES_MAX_MESSAGE_BYTES": str(max_message_bytes),
        }

    def send(self, content: bytes, *, rcpt: str, mail_from: str = "") -> tuple[int, bytes]:
        """One transaction from the null sender, as reports come: the first reply that is not
        a success, or DATA's."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as smtp:
            smtp.ehlo("mx.example.net")
            for reply in (smtp.mail(mail_from), smtp.rcpt(rcpt)):
                if reply[0] >= 400:
                    return reply
            # As on the wire: CRLF line ends (smtplib sends bytes as they are).
            return smtp.data(content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


def report_for(name: str, delivery_id: int, *, bounce_domain: str) -> tuple[bytes, str]:
    """Sample ``name`` about ``delivery_id``: its bytes with the delivery's VERP address where
    the sample has the placeholder, and that address (the report's envelope recipient)."""
    address = verp_address(delivery_id, bounce_domain=bounce_domain)
    content = (SAMPLES / f"{name}.eml").read_bytes().replace(PLACEHOLDER.encode(), address.encode())
    return content, address
