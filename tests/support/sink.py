"""A real SMTP server on loopback (aiosmtpd) whose replies a test can script.

sink.script_mail("550 5.7.1 sender refused")                  # next MAIL FROM gets 550
sink.script_rcpt("ann@example.com", "451 4.3.0 try later")   # next RCPT for ann gets 451
sink.script_data(DROP)                                         # next DATA: connection dropped
sink.wait_for(1)                                               # block until 1 message arrived
sink.fail_randomly([RCPT_451, DROP], fraction=0.3)            # a share of transactions fail
sink.stop_failing()
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy

from aiosmtpd.controller import Controller

from deliveries.capture import offering_pipelining

DROP = "drop the connection"
HANG = "say nothing for longer than the client waits"
HANG_SECONDS = 3.0
# Faults `fail_randomly` can inject, besides DROP and HANG (which strike at DATA).
CONNECT_421 = "421 to EHLO and HELO: the relay refuses the client"  # strikes a new connection
MAIL_421 = "421 to MAIL FROM, then the connection is closed"
RCPT_451 = "451 to every RCPT of the transaction"
RCPT_452 = "452 too many recipients, to every RCPT after the transaction's first"
RCPT_550 = "550 to every RCPT of the transaction"


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes

    @property
    def parsed(self) -> EmailMessage:
        return message_from_bytes(self.content, policy=default_policy)


class ScriptedHandler:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.received: list[Received] = []
        self.connections = 0
        self.delay_seconds = 0.0
        # Offer PIPELINING (RFC 2920) in the EHLO reply, as production relays do.
        self.pipelining = True
        self._mail_script: deque[str] = deque()
        self._rcpt_script: dict[str, deque[str]] = {}
        self._data_script: deque[str] = deque()
        # Per recipient domain: transactions in DATA right now, and the most there ever were.
        self._in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        # Random faults (fail_randomly): which, how often, and how many of each were injected.
        self._faults: tuple[str, ...] = ()
        self._fault_fraction = 0.0
        self._random = random.Random(0)
        self.faults_injected: Counter[str] = Counter()

    # -- scripting, from the test's thread -----------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.received.clear()
            self.connections = 0
            self.delay_seconds = 0.0
            self.pipelining = True
            self._mail_script.clear()
            self._rcpt_script.clear()
            self._data_script.clear()
            self._in_flight.clear()
            self.max_in_flight.clear()
            self._faults = ()
            self.faults_injected.clear()

    def script_mail(self, *replies: str) -> None:
        with self._lock:
            self._mail_script.extend(replies)

    def script_rcpt(self, address: str, *replies: str) -> None:
        with self._lock:
            self._rcpt_script.setdefault(address.lower(), deque()).extend(replies)

    def script_data(self, *replies: str) -> None:
        with self._lock:
            self._data_script.extend(replies)

    def fail_randomly(self, faults: Sequence[str], *, fraction: float, seed: int = 0) -> None:
        """Until ``stop_failing()``: each transaction (each new connection, for CONNECT_421)
        meets one of ``faults``, picked at random, with probability ``fraction``."""
        with self._lock:
            self._faults = tuple(faults)
            self._fault_fraction = fraction
            self._random = random.Random(seed)

    def stop_failing(self) -> None:
        with self._lock:
            self._faults = ()

    def _pick_fault(self, *, at_connect: bool) -> str | None:
        if not self._faults:
            return None
        with self._lock:
            if not self._faults or self._random.random() >= self._fault_fraction:
                return None
            fault = self._random.choice(self._faults)
            if (fault == CONNECT_421) != at_connect:
                return None
            self.faults_injected[fault] += 1
            return fault

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"the SMTP sink received {len(self.received)} message(s), "
                        f"expected {count} within {timeout} s"
                    )
                self._lock.wait(remaining)
            return list(self.received)

    def addresses_received(self) -> list[str]:
        with self._lock:
            return [rcpt for message in self.received for rcpt in message.rcpt_tos]

    # -- aiosmtpd hooks, on the server's thread ------------------------------------------------

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self._lock:
            self.connections += 1
        if self._pick_fault(at_connect=True):
            session.refused = True  # HELO, the client's fallback, is refused too
            return ["421 4.3.2 service not available, try later"]
        session.host_name = hostname
        return offering_pipelining(responses) if self.pipelining else responses

    async def handle_HELO(self, server, session, envelope, hostname):
        if getattr(session, "refused", False):
            return "421 4.3.2 service not available, try later"
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self._lock:
            reply = self._mail_script.popleft() if self._mail_script else None
        if reply is not None:
            return reply
        envelope.fault = self._pick_fault(at_connect=False)
        if envelope.fault == MAIL_421:
            # Closed once the reply is written (it is, before this loop runs anything else).
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.3.2 closing the connection, try later"
        # What aiosmtpd does without this hook.
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self._lock:
            script = self._rcpt_script.get(address.lower())
            reply = script.popleft() if script else None
        if reply is not None and not reply.startswith("2"):
            return reply
        fault = getattr(envelope, "fault", None)
        if fault == RCPT_451:
            return "451 4.3.0 temporary failure, try later"
        if fault == RCPT_550:
            return "550 5.1.1 no such user here"
        if fault == RCPT_452 and envelope.rcpt_tos:
            return "452 4.5.3 too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            reply = self._data_script.popleft() if self._data_script else None
            delay = self.delay_seconds
        if reply is None and getattr(envelope, "fault", None) in (DROP, HANG):
            reply = envelope.fault
        if reply == DROP:
            server.transport.close()
            return "421 4.4.2 connection dropped by the test"
        if reply == HANG:
            await asyncio.sleep(HANG_SECONDS)
            return "451 4.4.2 too late: the client should have given up"
        if reply is not None:
            return reply
        domains = {rcpt.rpartition("@")[2].lower() for rcpt in envelope.rcpt_tos}
        with self._lock:
            for domain in domains:
                self._in_flight[domain] = self._in_flight.get(domain, 0) + 1
                self.max_in_flight[domain] = max(
                    self.max_in_flight.get(domain, 0), self._in_flight[domain]
                )
        if delay:
            await asyncio.sleep(delay)
        with self._lock:
            for domain in domains:
                self._in_flight[domain] -= 1
        message = Received(
            mail_from=envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            content=envelope.original_content or b"",
        )
        with self._lock:
            self.received.append(message)
            self._lock.notify_all()
        return "250 2.0.0 OK: queued"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpSink:
    """The server and its handler; ``start()`` binds 127.0.0.1 on a free port."""

    def __init__(self, port: int | None = None) -> None:
        self.handler = ScriptedHandler()
        self.port = port or free_port()
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    @property
    def delay_seconds(self) -> float:
        return self.handler.delay_seconds

    @delay_seconds.setter
    def delay_seconds(self, seconds: float) -> None:
        """How long each DATA takes to be accepted: a slow relay."""
        self.handler.delay_seconds = seconds

    def __getattr__(self, name):
        return getattr(self.handler, name)
