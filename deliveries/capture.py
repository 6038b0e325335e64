"""The embedded capture SMTP server: accepts every message and keeps it as a ``.eml`` file.

It is the default relay so that a fresh Mailhub can be tried without mail leaving the machine.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session


def offering_pipelining(responses: list[str]) -> list[str]:
    """aiosmtpd's EHLO reply lines with PIPELINING (RFC 2920) offered, as production relays do
    (aiosmtpd reads commands in order however they arrive): Mailhub's workers then send MAIL,
    RCPT and DATA in one write. The last line, "250 HELP", stays last."""
    return [*responses[:-1], "250-PIPELINING", responses[-1]]


class CaptureHandler:
    """aiosmtpd handler writing one file per SMTP transaction, envelope first."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list[str]:
        session.host_name = hostname
        return offering_pipelining(responses)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
        name = f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        recipients = ", ".join(envelope.rcpt_tos)
        prologue = (
            f"X-Capture-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Capture-Envelope-To: {recipients}\r\n"
        ).encode()
        content = envelope.original_content or b""
        # Write then rename, so that a reader of the folder never sees half a message.
        partial = self.directory / f".{name}.part"
        partial.write_bytes(prologue + content)
        os.replace(partial, self.directory / name)
        return "250 2.0.0 OK: captured"
