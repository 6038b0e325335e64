"""Enqueueing as an application does it, in a process of its own: N messages handed to one
system in calls of ``--per-call`` messages, one after the other, timed.

    python -m benchmarks.enqueue mailhub --phase mhdrain1 --count 10000
    python -m benchmarks.enqueue post_office --phase podrain1 --count 10000

``mailhub``: Django's ``EmailMessage``s through ``api.backends.MailhubBackend.send_messages``
(the email backend's path: the REST serializer's validation, one transaction per call, publish
after commit), under DJANGO_SETTINGS_MODULE=mailhub.settings. ``post_office``:
``post_office.mail.send_many`` of as many keyword dicts (one ``bulk_create`` per call, a
``send_queued_mail`` task after its commit), under the peer's settings. The messages are the
benchmark's (``benchmarks.load.Mail``): one recipient, about 2 KB of text.

Both run the same way: a process of their own (one Django settings module per process), the
database connection opened before the clock starts, nothing else in the process. The result is
one JSON line on stdout: how many were accepted, when the first call started and the last
returned (wall clock, comparable with the sink's arrival times), and the CPU this process used
in between. Then it lingers (``LINGER``), as an application's process would live on.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from benchmarks.load import BODY, SENDER, Mail

SYSTEMS = ("mailhub", "post_office")
PER_CALL = 100
LINGER = 2.0  # seconds the process lives on after its last call


@dataclass(frozen=True)
class Enqueued:
    accepted: int
    calls: int
    started: float  # time.time() before the first call
    finished: float  # time.time() after the last call returned
    cpu_seconds: float  # user + system CPU of the enqueueing process in between

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    @classmethod
    def from_json(cls, line: str) -> Enqueued:
        return cls(**json.loads(line))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def mailhub_sender(mail: Mail, phase: str) -> Callable[[range], int]:
    from django.core.mail import EmailMessage, get_connection

    backend = get_connection("api.backends.MailhubBackend")

    def send(indexes: range) -> int:
        messages = [
            EmailMessage(
                subject=f"Benchmark {phase} {index}",
                body=f"Message {index} of {phase}.\n{BODY}",
                from_email=f"Bench <{SENDER}>",
                to=[mail.address(phase, index)],
            )
            for index in indexes
        ]
        return backend.send_messages(messages)

    return send


def post_office_sender(mail: Mail, phase: str) -> Callable[[range], int]:
    from post_office import mail as post_office

    def send(indexes: range) -> int:
        emails = post_office.send_many(
            [
                {
                    "recipients": [mail.address(phase, index)],
                    "sender": f"Bench <{SENDER}>",
                    "subject": f"Benchmark {phase} {index}",
                    "message": f"Message {index} of {phase}.\n{BODY}",
                }
                for index in indexes
            ]
        )
        return len(emails)

    return send


def enqueue(send: Callable[[range], int], *, count: int, per_call: int) -> Enqueued:
    accepted = calls = 0
    cpu_before, started = _cpu(), time.time()
    for start in range(0, count, per_call):
        accepted += send(range(start, min(start + per_call, count)))
        calls += 1
    finished, cpu_after = time.time(), _cpu()
    return Enqueued(accepted, calls, started, finished, cpu_after - cpu_before)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.enqueue", description=__doc__)
    parser.add_argument("system", choices=SYSTEMS)
    parser.add_argument("--phase", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--per-call", type=int, default=PER_CALL)
    parser.add_argument("--domains", type=int, default=1)
    args = parser.parse_args(argv)

    import django
    from django.db import connection

    django.setup()
    connection.ensure_connection()
    mail = Mail(domains=args.domains)
    senders = {"mailhub": mailhub_sender, "post_office": post_office_sender}
    result = enqueue(
        senders[args.system](mail, args.phase), count=args.count, per_call=args.per_call
    )
    print(json.dumps(asdict(result)), flush=True)
    # An application's process goes on after it sent mail; this one lingers a moment as if it
    # did. Mailhub publishes from a background thread (deliveries.publisher.PublishCoalescer),
    # and a process that exits at once may cut a publish short: that mail then waits for the
    # dispatcher, MAILHUB_REPUBLISH_AFTER_SECONDS (60 s) later.
    time.sleep(LINGER)


if __name__ == "__main__":
    main()
