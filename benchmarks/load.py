"""The load: HTTP clients on kept-alive connections, and plain smtplib for the raw limit."""

from __future__ import annotations

import http.client
import json
import smtplib  # the raw limit is what plain smtplib achieves, with no Mailhub in between
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate

DOMAIN = "bench.test"
SENDER = f"bench@{DOMAIN}"
# About 2 KB of 7-bit text in lines short enough that MIME sends it as it is.
_LINE = "The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\n"
BODY = _LINE * 26


@dataclass(frozen=True)
class Mail:
    """What the benchmark sends: message ``index`` of ``phase`` goes to one recipient whose
    local part names both (the sink counts by it), at one of ``domains`` domains."""

    domains: int = 1

    def address(self, phase: str, index: int) -> str:
        domain = DOMAIN if self.domains == 1 else f"d{index % self.domains}.{DOMAIN}"
        return f"{phase}-{index:07d}@{domain}"

    def message(self, phase: str, index: int, *, priority: str = "normal") -> dict:
        """The body of POST /api/v1/messages."""
        return {
            "from": f"Bench <{SENDER}>",
            "to": [self.address(phase, index)],
            "subject": f"Benchmark {phase} {index}",
            "text": f"Message {index} of {phase}.\n{BODY}",
            "priority": priority,
        }

    def batch(self, phase: str, start: int, count: int, *, priority: str = "normal") -> dict:
        """The body of POST /api/v1/messages/batch: shared fields once, the rest per message."""
        return {
            "defaults": {"from": f"Bench <{SENDER}>", "priority": priority},
            "messages": [
                {
                    "to": [self.address(phase, index)],
                    "subject": f"Benchmark {phase} {index}",
                    "text": f"Message {index} of {phase}.\n{BODY}",
                }
                for index in range(start, start + count)
            ],
        }

    def raw(self, phase: str, index: int) -> tuple[str, bytes]:
        """Recipient and bytes of a message for plain smtplib, about the size Mailhub sends."""
        recipient = self.address(phase, index)
        body = f"Message {index} of {phase}.\n{BODY}".replace("\n", "\r\n")
        content = (
            f"From: Bench <{SENDER}>\r\n"
            f"To: {recipient}\r\n"
            f"Subject: Benchmark {phase} {index}\r\n"
            f"Date: {formatdate()}\r\n"
            f"Message-ID: <{phase}.{index}@{DOMAIN}>\r\n"
            "MIME-Version: 1.0\r\n"
            'Content-Type: text/plain; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: 7bit\r\n"
            "\r\n"
            f"{body}"
        )
        return recipient, content.encode()


@dataclass
class HttpResult:
    requests: int = 0
    accepted: int = 0  # messages the API answered as accepted
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # connection-level failures
    latencies: list[float] = field(default_factory=list)  # seconds, per request
    started: float = 0.0  # wall clock (time.time) when the first request was sent
    finished: float = 0.0  # wall clock when the last answer was read

    @property
    def seconds(self) -> float:
        return self.finished - self.started


def accepted_single(status: int, payload: bytes) -> int:
    return 1 if status == 202 else 0


def accepted_batch(status: int, payload: bytes) -> int:
    if status not in (202, 207):
        return 0
    return int(json.loads(payload).get("accepted", 0))


def post_all(
    *,
    port: int,
    key: str,
    path: str,
    bodies: Callable[[int], dict],
    count: int,
    clients: int,
    accepted: Callable[[int, bytes], int] = accepted_single,
    per_second: float | None = None,
    method: str = "POST",
) -> HttpResult:
    """POST ``bodies(i)`` for i in 0..count-1 from ``clients`` threads, one kept-alive
    connection each; at ``per_second`` a steady rate instead of as fast as they can. With
    ``method="GET"`` the same without bodies.

    A request that fails at the connection level (the server closed a kept-alive connection,
    a worker was recycled) is counted in ``errors`` and not retried: retrying a POST could
    accept a message twice.
    """
    result = HttpResult()
    lock = threading.Lock()
    next_index = iter(range(count))
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {key}",
        "Host": "127.0.0.1",
    }
    begin = time.monotonic()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                if per_second:
                    delay = begin + index / per_second - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                body = json.dumps(bodies(index)).encode() if method == "POST" else None
                sent_at, started = time.time(), time.perf_counter()
                try:
                    connection.request(method, path, body=body, headers=headers)
                    response = connection.getresponse()
                    payload = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    connection.close()
                    with lock:
                        result.requests += 1
                        result.errors[type(exc).__name__] += 1
                    continue
                elapsed = time.perf_counter() - started
                done_at = time.time()
                with lock:
                    result.requests += 1
                    result.statuses[response.status] += 1
                    result.accepted += accepted(response.status, payload)
                    result.latencies.append(elapsed)
                    result.started = min(result.started or sent_at, sent_at)
                    result.finished = max(result.finished, done_at)
        finally:
            connection.close()

    # Daemons: after Ctrl-C the main thread cleans up and exits without waiting for them.
    threads = [
        threading.Thread(target=client, name=f"http-{i}", daemon=True) for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


@dataclass
class SmtpResult:
    sent: int
    failed: int
    seconds: float


def smtp_blast(*, port: int, mail: Mail, phase: str, count: int, connections: int) -> SmtpResult:
    """Send ``count`` messages with plain smtplib over ``connections`` connections opened
    beforehand and reused for every message (one thread each); time from the first MAIL FROM
    to the last reply."""
    messages = [mail.raw(phase, index) for index in range(count)]
    shares = [messages[i::connections] for i in range(connections)]
    opened = [smtplib.SMTP("127.0.0.1", port, timeout=60) for _ in range(connections)]
    for smtp in opened:
        smtp.ehlo("bench.localhost")
    start = threading.Barrier(connections + 1)
    failed = Counter[int]()

    def send(smtp: smtplib.SMTP, share: list[tuple[str, bytes]], slot: int) -> None:
        start.wait()
        for recipient, content in share:
            try:
                smtp.sendmail(SENDER, [recipient], content)
            except smtplib.SMTPException:
                failed[slot] += 1

    threads = [
        threading.Thread(target=send, args=(smtp, share, slot), name=f"smtp-{slot}", daemon=True)
        for slot, (smtp, share) in enumerate(zip(opened, shares, strict=True))
    ]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    for smtp in opened:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
    lost = sum(failed.values())
    return SmtpResult(sent=count - lost, failed=lost, seconds=seconds)
