"""The relay the benchmark delivers to: the tests' aiosmtpd sink, in a process of its own.

Its own process, so that the load generator's threads (HTTP clients, smtplib) do not share a
GIL with it: the raw limit and the end-to-end rate both measure this one server. It keeps no
message bodies, only, per phase, when each Message-ID first arrived and how often every
Message-ID arrived at all (a duplicate is one that arrived twice). The phase of a message is the
part of its first recipient's local part before the ``-``: ``e2e-000042@bench.test`` -> ``e2e``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from multiprocessing.connection import Connection

from tqdm import tqdm

from tests.support.sink import ScriptedHandler, SmtpSink

_MESSAGE_ID = re.compile(rb"^message-id:(.*)$", re.IGNORECASE | re.MULTILINE)


def message_id_of(content: bytes) -> str:
    """The Message-ID header of raw message bytes ("" when it has none); headers only."""
    head = content.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = _MESSAGE_ID.search(head)
    return match.group(1).strip().decode("ascii", "replace") if match else ""


def phase_of(address: str) -> str:
    return address.split("@", 1)[0].split("-", 1)[0]


class CountingHandler(ScriptedHandler):
    """Accepts every message at once and remembers only what the benchmark counts."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[str] = Counter()
        self.arrived: defaultdict[str, dict[str, float]] = defaultdict(dict)
        self.received_by_phase: Counter[str] = Counter()

    async def handle_DATA(self, server, session, envelope):
        arrived = time.time()
        message_id = message_id_of(envelope.original_content or b"")
        phase = phase_of(envelope.rcpt_tos[0]) if envelope.rcpt_tos else ""
        with self._lock:
            self.seen[message_id] += 1
            self.received_by_phase[phase] += 1
            self.arrived[phase].setdefault(message_id, arrived)
        return "250 2.0.0 OK: queued"

    # -- answers to the benchmark, through the pipe ------------------------------------------

    def summary(self, phase: str) -> dict:
        with self._lock:
            times = list(self.arrived[phase].values())
            return {
                "received": self.received_by_phase[phase],
                "distinct": len(times),
                "first": min(times, default=None),
                "last": max(times, default=None),
            }

    def arrivals(self, phase: str) -> dict[str, float]:
        with self._lock:
            return dict(self.arrived[phase])

    def fail_share(self, faults: list[str], fraction: float) -> dict[str, int]:
        """Until called again with no faults: ``fraction`` of the transactions meet one of
        ``faults`` (``tests.support.sink``'s); returns how many of each were injected so far."""
        if faults:
            self.fail_randomly(faults, fraction=fraction)
        else:
            self.stop_failing()
        with self._lock:
            return dict(self.faults_injected)

    def duplicates(self) -> dict:
        with self._lock:
            repeated = {mid: n for mid, n in self.seen.items() if n > 1}
            return {
                "duplicates": sum(n - 1 for n in repeated.values()),
                "examples": sorted(repeated)[:5],
                "received": sum(self.seen.values()),
            }


class CountingSink(SmtpSink):
    def __init__(self) -> None:
        super().__init__()
        self.handler = CountingHandler()
        self._controller.handler = self.handler


def _serve(connection: Connection) -> None:
    # aiosmtpd logs every SMTP command at INFO: that would be most of the sink's work.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    sink = CountingSink().start()
    connection.send(sink.port)
    try:
        while True:
            try:
                command, *args = connection.recv()
            except EOFError:  # the benchmark is gone
                break
            if command == "stop":
                break
            connection.send(getattr(sink.handler, command)(*args))
    finally:
        sink.stop()


class SinkProcess:
    """The sink in a child process; ``url`` for MAILHUB_SMTP_URL, and its counts on request."""

    def __init__(self) -> None:
        # spawn, not fork: the benchmark process may already hold database connections.
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child,), name="bench-sink", daemon=True)
        self.port = 0

    def start(self, *, timeout: float = 30.0) -> SinkProcess:
        self.process.start()
        if not self._connection.poll(timeout):
            raise RuntimeError(f"the SMTP sink did not start within {timeout} s")
        self.port = self._connection.recv()
        return self

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def _ask(self, command: str, *args):
        self._connection.send((command, *args))
        return self._connection.recv()

    def summary(self, phase: str) -> dict:
        return self._ask("summary", phase)

    def arrivals(self, phase: str) -> dict[str, float]:
        return self._ask("arrivals", phase)

    def duplicates(self) -> dict:
        return self._ask("duplicates")

    def fail_share(self, faults: list[str], fraction: float = 0.0) -> dict[str, int]:
        return self._ask("fail_share", faults, fraction)

    def wait_for(
        self,
        phase: str,
        count: int,
        *,
        timeout: float,
        progress: bool = False,
        check: Callable[[], None] | None = None,
    ) -> dict:
        """Poll until ``count`` distinct messages of ``phase`` arrived, or ``timeout`` passed;
        with ``progress``, how many did so far on stderr, about once a second. ``check`` is
        called at every poll: it raises to stop waiting (the sender failed)."""
        deadline = time.monotonic() + timeout
        bar = (
            tqdm(
                total=count,
                desc=f"bench: {phase} delivered",
                unit="msg",
                file=sys.stderr,
                mininterval=1.0,
                dynamic_ncols=True,
            )
            if progress
            else None
        )
        try:
            while True:
                summary = self.summary(phase)
                if bar is not None:
                    bar.update(min(summary["distinct"], count) - bar.n)
                if summary["distinct"] >= count or time.monotonic() >= deadline:
                    return summary
                if check is not None:
                    check()
                time.sleep(0.05)
        finally:
            if bar is not None:
                bar.close()

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError):
                self._connection.send(("stop",))
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
