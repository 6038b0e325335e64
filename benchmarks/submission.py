"""SMTP submission under load: messages accepted per second over 8 smtplib connections.

A phase of ``benchmarks.run`` (after the single accepts). It starts the `submission` process
as the Procfile does (``manage.py submission_smtp``) with the stack's environment and a
self-signed certificate, opens the connections (STARTTLS, AUTH with an API key) before the
clock starts, submits ``count`` messages (each connection reusing its session), and times
from the first ``MAIL FROM`` to the last ``250``: every ``250`` means the message and its
delivery were committed, as a ``202`` does. The messages are then the workers' like any
other phase's (``wait_final(phase, ...)`` sees them).
"""

from __future__ import annotations

import smtplib
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.load import SENDER, Mail
from benchmarks.stack import Stack, say
from benchmarks.stats import rate, ratio
from benchmarks.table import Row, heading
from tests.support.submission import SubmissionProcess, self_signed_certificate

CONNECTIONS = 8


@dataclass
class SubmissionResult:
    connections: int
    accepted: int = 0
    refused: Counter[int] = field(default_factory=Counter)  # by SMTP reply code
    errors: Counter[str] = field(default_factory=Counter)  # connection-level failures
    seconds: float = 0.0

    @property
    def rate(self) -> float | None:
        return rate(self.accepted, self.seconds)


def smtp_submit(
    *,
    port: int,
    context: ssl.SSLContext,
    api_key: str,
    mail: Mail,
    phase: str,
    count: int,
    connections: int = CONNECTIONS,
) -> SubmissionResult:
    """Submit ``count`` messages of ``phase`` over ``connections`` authenticated connections
    opened beforehand (one thread each)."""
    messages = [mail.raw(phase, index) for index in range(count)]
    shares = [messages[i::connections] for i in range(connections)]
    opened = []
    for _ in range(connections):
        smtp = smtplib.SMTP("127.0.0.1", port, timeout=60)
        smtp.starttls(context=context)
        smtp.login("bench", api_key)
        opened.append(smtp)
    result = SubmissionResult(connections=connections)
    lock = threading.Lock()
    start = threading.Barrier(connections + 1)

    def send(smtp: smtplib.SMTP, share: list[tuple[str, bytes]]) -> None:
        start.wait()
        accepted, refused, errors = 0, Counter[int](), Counter[str]()
        for recipient, content in share:
            try:
                smtp.sendmail(SENDER, [recipient], content)
                accepted += 1
            except smtplib.SMTPResponseException as exc:
                refused[exc.smtp_code] += 1
            except smtplib.SMTPRecipientsRefused as exc:
                refused.update(code for code, _ in exc.recipients.values())
            except (smtplib.SMTPException, OSError) as exc:
                errors[type(exc).__name__] += 1
                break
        with lock:
            result.accepted += accepted
            result.refused.update(refused)
            result.errors.update(errors)

    threads = [
        threading.Thread(target=send, args=(smtp, share), name=f"submit-{slot}", daemon=True)
        for slot, (smtp, share) in enumerate(zip(opened, shares, strict=True))
    ]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - began
    for smtp in opened:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
    return result


def measure(
    stack: Stack,
    *,
    mail: Mail,
    phase: str,
    count: int,
    connections: int = CONNECTIONS,
    api_key: str | None = None,
) -> SubmissionResult:
    """Start the submission process beside ``stack``, run ``smtp_submit``, stop it."""
    directory: Path = stack.log_dir
    cert, key = self_signed_certificate(directory)
    env = {
        **stack.environment(),
        # One key, as one busy application would use it: its connections all count.
        "MAILHUB_SUBMISSION_MAX_CONNECTIONS_PER_KEY": str(max(connections, 10)),
    }
    server = SubmissionProcess("bench", env=env, log_dir=directory, cert=cert, key=key)
    say(f"starting the SMTP submission server; {count} messages over {connections} connections")
    server.start()
    try:
        return smtp_submit(
            port=server.port,
            context=server.tls_context(),
            api_key=api_key or stack.api_key(),
            mail=mail,
            phase=phase,
            count=count,
            connections=connections,
        )
    finally:
        server.stop()


def rows(result: SubmissionResult, *, api_rate: float | None = None) -> list[Row]:
    """The phase's rows for the table; ``api_rate``: the API's single-accept msgs/s, to compare."""
    out = [
        heading(f"SMTP submission: {result.connections} connections, STARTTLS, AUTH"),
        Row("accepted", result.rate, "msgs/s"),
    ]
    if api_rate is not None:
        percent = ratio(result.rate, api_rate)
        out.append(
            Row(
                "ratio to the API's single accepts", None if percent is None else percent * 100, "%"
            )
        )
    if result.refused:
        refused = ", ".join(f"{code}: {n}" for code, n in sorted(result.refused.items()))
        out.append(Row("refused", refused))
    if result.errors:
        out.append(Row("connection errors", sum(result.errors.values()), "msgs"))
    return out
