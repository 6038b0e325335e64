"""The SMTP transport: the only module that speaks SMTP.

A transport lives as long as its worker process and keeps one connection open across messages,
resetting it (RSET) between transactions and reconnecting when the server has dropped it. Every
message is one SMTP transaction; the transport reports a reply per recipient and never raises
for anything the network or the server does.
"""

from __future__ import annotations

import logging
import random
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from deliveries.policy import SmtpReply, Stage, is_relay_fault
from mailhub.env import SmtpRelay

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipients: Sequence[str]
    content: bytes


class Transport(Protocol):
    def send(self, envelope: Envelope, *, deadline: float) -> dict[str, SmtpReply]:
        """Send one message; return the reply that decides each recipient's fate.

        ``deadline`` is a ``time.monotonic()`` value after which the attempt is abandoned.
        """
        ...

    def close(self) -> None: ...


# A connection unused for longer than this is checked with RSET before the next message.
_IDLE_PROBE_SECONDS = 5.0


class _Abort(Exception):
    """Ends a transaction early with one reply for every recipient still undecided."""

    def __init__(self, reply: SmtpReply, *, drop_connection: bool) -> None:
        super().__init__(str(reply))
        self.reply = reply
        self.drop_connection = drop_connection


def _envelope_command(command: bytes, address: str) -> bytes:
    """``MAIL FROM:<address>`` or ``RCPT TO:<address>``, ended by CRLF. The address goes out as
    it is: the worker sends only printable ASCII without spaces (sending._envelope_problem), and
    smtplib's mail() and rcpt() would parse it again for nothing. A line break is refused here
    all the same, as smtplib's putcmd refuses it, so that no caller can add a command; so is
    anything but ASCII (UnicodeEncodeError, a ValueError too)."""
    if "\r" in address or "\n" in address:
        raise ValueError(f"an envelope address holds a line break: {address!r}")
    return b"%s:<%s>\r\n" % (command, address.encode("ascii"))


def _data_block(content: bytes) -> bytes:
    """The message as it follows DATA: lines starting with a dot doubled, ended by CRLF.CRLF
    (what smtplib's ``data()`` sends)."""
    block = _LEADING_DOT.sub(b"..", content)
    if not block.endswith(b"\r\n"):
        block += b"\r\n"
    return block + b".\r\n"


_LEADING_DOT = re.compile(rb"(?m)^\.")


def _decode(text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(text.split())[:1000]


class SmtpTransport:
    """Delivers over one reused connection to one relay; STARTTLS, SSL and AUTH from the URL."""

    def __init__(
        self,
        relay: SmtpRelay,
        *,
        timeout: float,
        data_timeout: float,
        helo_name: str | None = None,
    ) -> None:
        self.relay = relay
        self.timeout = timeout
        self.data_timeout = data_timeout
        self.helo_name = helo_name
        self._conn: smtplib.SMTP | None = None
        self._deadline = 0.0
        self._last_used = 0.0

    def __repr__(self) -> str:
        return f"<SmtpTransport {self.relay}>"  # the relay's str: its password never shows

    # -- public --------------------------------------------------------------------------------

    def send(self, envelope: Envelope, *, deadline: float) -> dict[str, SmtpReply]:
        self._deadline = deadline
        replies: dict[str, SmtpReply] = {}
        try:
            self._transaction(envelope, replies)
        except _Abort as abort:
            if abort.drop_connection:
                self.close()
            else:
                self._reset()
            for recipient in envelope.recipients:
                replies.setdefault(recipient, abort.reply)
        relay = str(self.relay)
        return {recipient: replace(reply, relay=relay) for recipient, reply in replies.items()}

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()

    # -- one transaction -----------------------------------------------------------------------

    def _transaction(self, envelope: Envelope, replies: dict[str, SmtpReply]) -> None:
        """One transaction. With a server that offers PIPELINING (RFC 2920) MAIL, every RCPT and
        DATA go out in one write and their replies are read after it, two round trips per
        message instead of three plus one per recipient; the replies mean the same either way."""
        commands = [
            _envelope_command(b"MAIL FROM", envelope.sender),
            *(_envelope_command(b"RCPT TO", address) for address in envelope.recipients),
            b"DATA\r\n",
        ]
        conn, reused = self._connection()
        try:
            pipelined, (code, text) = self._start(conn, commands)
        except _Abort as abort:
            # A reused connection the server has quietly closed fails at its first command;
            # that says nothing about this message, so open a new one and start again.
            if not reused or abort.reply.code is not None:
                raise
            self.close()
            conn, _ = self._connection()
            pipelined, (code, text) = self._start(conn, commands)
        self._last_used = time.monotonic()
        if code != 250:
            mail = SmtpReply(code, _decode(text), Stage.MAIL)
            if code == 421:
                raise _Abort(mail, drop_connection=True)
            if pipelined:  # the RCPTs and DATA were sent too: read their replies
                try:
                    for _ in envelope.recipients:
                        self._reply(conn, Stage.RCPT)
                    self._data_refused(conn)
                except _Abort:  # the refusal of MAIL is still what decides
                    raise _Abort(mail, drop_connection=True) from None
            raise _Abort(mail, drop_connection=False)

        accepted = []
        for recipient, command in zip(envelope.recipients, commands[1:-1], strict=True):
            if not pipelined:
                self._write(conn, Stage.RCPT, command)
            code, text = self._reply(conn, Stage.RCPT)
            if code == 421:
                raise _Abort(SmtpReply(code, _decode(text), Stage.RCPT), drop_connection=True)
            if code in (250, 251):
                accepted.append(recipient)
            else:
                replies[recipient] = SmtpReply(code, _decode(text), Stage.RCPT)
        if not accepted:
            if pipelined:
                self._data_refused(conn)
            self._reset()
            return

        if not pipelined:
            self._write(conn, Stage.DATA, commands[-1])
        code, text = self._reply(conn, Stage.DATA)
        if code == 354:
            self._write(conn, Stage.DATA, _data_block(envelope.content), timeout=self.data_timeout)
            code, text = self._reply(conn, Stage.DATA, timeout=self.data_timeout)
        reply = SmtpReply(code, _decode(text), Stage.DATA)
        if code == 421:
            raise _Abort(reply, drop_connection=True)
        for recipient in accepted:
            replies[recipient] = reply
        if code != 250:
            self._reset()

    def _start(self, conn: smtplib.SMTP, commands: list[bytes]) -> tuple[bool, tuple[int, bytes]]:
        """Write MAIL (and, pipelined, everything up to DATA); return whether it was pipelined
        and the reply to MAIL."""
        pipelined = conn.has_extn("pipelining")
        self._write(conn, Stage.MAIL, b"".join(commands) if pipelined else commands[0])
        return pipelined, self._reply(conn, Stage.MAIL)

    def _data_refused(self, conn: smtplib.SMTP) -> None:
        """Read the reply to a pipelined DATA that should not go on (no MAIL, no recipient). A
        server that says 354 all the same gets an empty message, which it must refuse."""
        code, text = self._reply(conn, Stage.DATA)
        if code == 354:
            self._write(conn, Stage.DATA, b".\r\n")
            code, text = self._reply(conn, Stage.DATA)
        if code == 421:
            raise _Abort(SmtpReply(code, _decode(text), Stage.DATA), drop_connection=True)

    def _write(
        self, conn: smtplib.SMTP, stage: Stage, data: bytes, *, timeout: float | None = None
    ) -> None:
        self._command(stage, lambda: conn.send(data), timeout=timeout)

    def _reply(
        self, conn: smtplib.SMTP, stage: Stage, *, timeout: float | None = None
    ) -> tuple[int, bytes]:
        return self._command(stage, conn.getreply, timeout=timeout)

    def _command(
        self,
        stage: Stage,
        call: Callable[[], _T],
        *,
        timeout: float | None = None,
    ) -> _T:
        """Run one SMTP read or write under the phase timeout, bounded by the attempt's
        deadline; a lost connection or a timeout ends the transaction."""
        assert self._conn is not None
        self._set_timeout(stage, timeout or self.timeout)
        try:
            return call()
        except smtplib.SMTPServerDisconnected as exc:
            reply = SmtpReply(
                None, f"connection lost: {exc or 'server closed the connection'}", stage
            )
        except TimeoutError:
            reply = SmtpReply(None, "timed out waiting for the server", stage)
        except (smtplib.SMTPException, OSError) as exc:
            reply = SmtpReply(None, f"{type(exc).__name__}: {exc}", stage)
        raise _Abort(reply, drop_connection=True)

    def _set_timeout(self, stage: Stage, timeout: float) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise _Abort(
                SmtpReply(None, "attempt deadline passed before the server answered", stage),
                drop_connection=True,
            )
        if self._conn is not None and self._conn.sock is not None:
            self._conn.sock.settimeout(min(timeout, remaining))

    def _reset(self) -> None:
        """RSET after a failed transaction; a connection that fails it is dropped."""
        if self._conn is None:
            return
        try:
            self._conn.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    # -- the connection ------------------------------------------------------------------------

    def _connection(self) -> tuple[smtplib.SMTP, bool]:
        """The open connection (and True), or a new one (and False)."""
        if self._conn is not None:
            # Between back-to-back messages the session is ready for the next MAIL (a failed
            # transaction was reset); only a connection idle for a while is probed first.
            recently_used = time.monotonic() - self._last_used < _IDLE_PROBE_SECONDS
            if recently_used or self._is_alive(self._conn):
                return self._conn, True
        self.close()
        self._conn = self._open()
        return self._conn, False

    def _is_alive(self, conn: smtplib.SMTP) -> bool:
        # Servers close idle connections (RFC 5321 allows it after 5 minutes); an RSET finds
        # out for the price of one round trip instead of a failed attempt.
        try:
            self._set_timeout(Stage.CONNECT, self.timeout)
            code, _ = conn.rset()
        except _Abort:
            raise
        except (smtplib.SMTPException, OSError):
            return False
        return code == 250

    def _open(self) -> smtplib.SMTP:
        relay = self.relay
        timeout = min(self.timeout, max(self._deadline - time.monotonic(), 0.001))
        conn: smtplib.SMTP | None = None
        try:
            if relay.use_ssl:
                conn = smtplib.SMTP_SSL(
                    local_hostname=self.helo_name,
                    timeout=timeout,
                    context=ssl.create_default_context(),
                )
            else:
                conn = smtplib.SMTP(local_hostname=self.helo_name, timeout=timeout)
            code, text = conn.connect(relay.host, relay.port)
            if code != 220:
                raise _Abort(SmtpReply(code, _decode(text), Stage.CONNECT), drop_connection=True)
            self._conn = conn
            self._handshake(conn)
        except _Abort:
            self._discard(conn)
            raise
        except smtplib.SMTPResponseException as exc:
            self._discard(conn)
            reply = SmtpReply(exc.smtp_code, _decode(exc.smtp_error), Stage.CONNECT)
            raise _Abort(reply, drop_connection=True) from None
        except TimeoutError:
            self._discard(conn)
            reply = SmtpReply(
                None, f"timed out connecting to {relay.host}:{relay.port}", Stage.CONNECT
            )
            raise _Abort(reply, drop_connection=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            self._discard(conn)
            reply = SmtpReply(
                None, f"cannot connect to {relay.host}:{relay.port}: {exc}", Stage.CONNECT
            )
            raise _Abort(reply, drop_connection=True) from None
        logger.info("smtp connected to %s", relay)
        return conn

    def _handshake(self, conn: smtplib.SMTP) -> None:
        relay = self.relay
        self._set_timeout(Stage.CONNECT, self.timeout)
        conn.ehlo_or_helo_if_needed()
        if relay.starttls:
            self._set_timeout(Stage.CONNECT, self.timeout)
            conn.starttls(context=ssl.create_default_context())
            conn.ehlo()
        if relay.username:
            self._set_timeout(Stage.CONNECT, self.timeout)
            conn.login(relay.username, relay.password)

    def _discard(self, conn: smtplib.SMTP | None) -> None:
        self._conn = None
        if conn is not None:
            conn.close()


class RelayPool:
    """Spreads mail over several relays by weight and fails over when one cannot be reached.

    A relay that fails before any recipient is named (refused, silent, TLS or AUTH trouble) is
    taken out of rotation for ``cooldown`` seconds (a circuit breaker, per worker process) and
    the same attempt goes on with the next relay. Only when no relay is left does the message
    get the failure, which then does not count against its attempts (policy.decide).
    """

    def __init__(
        self,
        transports: Sequence[SmtpTransport],
        *,
        cooldown: float,
        rand=random.random,
        clock=time.monotonic,
    ) -> None:
        self._transports = list(transports)
        self._open_until = [0.0] * len(self._transports)
        self._cooldown = cooldown
        self._rand = rand
        self._clock = clock

    def send(self, envelope: Envelope, *, deadline: float) -> dict[str, SmtpReply]:
        tried: set[int] = set()
        replies: dict[str, SmtpReply] | None = None
        while (index := self._pick(exclude=tried)) is not None:
            tried.add(index)
            replies = self._transports[index].send(envelope, deadline=deadline)
            if not all(is_relay_fault(reply) for reply in replies.values()):
                self._open_until[index] = 0.0
                return replies
            self._open_until[index] = self._clock() + self._cooldown
            logger.warning(
                "relay %s out of rotation for %.0f s: %s",
                self._transports[index].relay,
                self._cooldown,
                next(iter(replies.values())),
            )
        if replies is not None:
            return replies
        reply = SmtpReply(
            None, "no relay available: all are cooling down after failures", Stage.CONNECT
        )
        return dict.fromkeys(envelope.recipients, reply)

    def close(self) -> None:
        for transport in self._transports:
            transport.close()

    def _pick(self, *, exclude: set[int]) -> int | None:
        now = self._clock()
        candidates = [
            index
            for index, open_until in enumerate(self._open_until)
            if index not in exclude and open_until <= now
        ]
        if not candidates:
            return None
        total = sum(self._transports[i].relay.weight for i in candidates)
        point = self._rand() * total
        for index in candidates:
            point -= self._transports[index].relay.weight
            if point < 0:
                return index
        return candidates[-1]
