"""The SMTP submission server (RFC 6409): applications that speak only SMTP hand Mailhub their
mail on port 587 (2587 in development), and each message becomes a Mailhub message of the API
key's client, through the API's validation (``api.mime_intake``) and the same accept service.

A session: ``EHLO``, ``STARTTLS``, ``AUTH PLAIN`` or ``AUTH LOGIN`` with an API key as the
password (the username is not looked at: any will do), then any number of messages. The key
is checked as the API checks it (``api.authentication``), and again at each ``MAIL FROM``, so
that a revoked key sends nothing more; each ``MAIL FROM`` counts as one request against the
key's rate limit, the API's counter (``accounts.rate_limit``). A test-mode key's messages are
test mail, as through the API: the simulator settles them and no relay sees them.

The replies a client acts on:

    530 5.7.0   MAIL before AUTH
    538 5.7.11  AUTH before STARTTLS (but from loopback with
                MAILHUB_SUBMISSION_ALLOW_PLAINTEXT_LOOPBACK)
    535 5.7.8   a wrong key
    421 4.7.0   the key already holds MAILHUB_SUBMISSION_MAX_CONNECTIONS_PER_KEY connections,
                or a fourth AUTH on one connection (the connection is closed)
    530 5.7.0   MAIL with a key revoked since AUTH
    451 4.7.1   the key's rate limit, with the seconds to wait
    452 4.5.3   more recipients than MAILHUB_MAX_RECIPIENTS (send the rest in another message)
    553 5.1.3   a recipient address the API would refuse
    552         larger than MAILHUB_SUBMISSION_MAX_MESSAGE_BYTES (advertised with SIZE)
    550 5.6.0   a message the API would refuse, or that cannot be read, with the reason
    550 5.7.1   From: a domain the key's client may not send from (not verified), naming it
    451 4.3.0   Mailhub could not store it (the database is away): try again
    250 2.0.0   stored, with the message's id: only once the accept has committed

Accepting is synchronous Django (ORM, transaction): it runs in a small pool of threads
(``MAILHUB_SUBMISSION_THREADS``), each with its own database connection, which is looked after
as Django looks after a request's (``close_old_connections`` before and after each job).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import re
import socket
import ssl
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, TLSSetupException
from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone
from rest_framework import serializers

from accounts.models import ApiKey
from accounts.rate_limit import api_key_rate_check
from accounts.services import api_key_hash
from api.authentication import LAST_USED_RESOLUTION, active_key
from api.mime_intake import UnacceptableMessage, submission_draft
from api.serializers.fields import AddressField
from api.smtp_threads import DrainingController, ThreadedHandler
from deliveries.models import Message
from deliveries.services import messages_accept
from domains.errors import SenderDomainNotVerified

logger = logging.getLogger(__name__)


#: Failed AUTH commands after which a connection is closed (a key is 256 random bits: three are
#: plenty for a typo, and a guesser gets nowhere in any number).
AUTH_ATTEMPTS = 3
#: How long a stopping server lets messages in flight finish before it cuts them off.
DRAIN_SECONDS = 20.0
#: The longest reason quoted in a reply: an SMTP reply line is at most 512 octets.
_REASON_CHARS = 400
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class SubmissionConfig:
    host: str
    port: int
    tls_context: ssl.SSLContext | None
    allow_plaintext_loopback: bool
    max_message_bytes: int
    max_recipients: int
    max_connections_per_key: int
    threads: int
    hostname: str


def submission_config(**overrides: Any) -> SubmissionConfig:
    """The server's configuration from the settings (``overrides`` win: tests, the command)."""
    host, port = settings.MAILHUB_SUBMISSION_BIND
    values: dict[str, Any] = {
        "host": host,
        "port": port,
        "tls_context": None,
        "allow_plaintext_loopback": settings.MAILHUB_SUBMISSION_ALLOW_PLAINTEXT_LOOPBACK,
        "max_message_bytes": settings.MAILHUB_SUBMISSION_MAX_MESSAGE_BYTES,
        "max_recipients": settings.MAILHUB_MAX_RECIPIENTS,
        "max_connections_per_key": settings.MAILHUB_SUBMISSION_MAX_CONNECTIONS_PER_KEY,
        "threads": settings.MAILHUB_SUBMISSION_THREADS,
        "hostname": settings.MAILHUB_SMTP_HELO_NAME or socket.getfqdn(),
    }
    if settings.MAILHUB_SUBMISSION_TLS_CERT and "tls_context" not in overrides:
        values["tls_context"] = tls_context(
            cert=settings.MAILHUB_SUBMISSION_TLS_CERT, key=settings.MAILHUB_SUBMISSION_TLS_KEY
        )
    values.update(overrides)
    return SubmissionConfig(**values)


def tls_context(*, cert: str, key: str) -> ssl.SSLContext:
    """A server context for STARTTLS (TLS 1.2 or later), from PEM files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def reply_text(text: str) -> str:
    """``text`` fit for an SMTP reply: one line, ASCII, not too long."""
    line = _UNPRINTABLE.sub(" ", text.encode("ascii", "backslashreplace").decode()).strip()
    return line if len(line) <= _REASON_CHARS else line[: _REASON_CHARS - 3] + "..."


# -- the work done in threads (synchronous Django) --------------------------------------------


def _key_for(secret: str) -> ApiKey | None:
    """The active key with this secret, its use noted as the API notes it."""
    key = active_key(api_key_hash(secret))
    if key is not None:
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(id=key.id).update(last_used_at=now)
    return key


@dataclass(frozen=True)
class _MailDecision:
    key: ApiKey | None  # None: revoked since AUTH
    wait_seconds: float = 0.0  # > 0: over the rate limit


def _mail_decision(key: ApiKey) -> _MailDecision:
    """Is ``key`` still active, and within its rate limit (this transaction counted)?"""
    current = active_key(key.key_hash)
    if current is None:
        return _MailDecision(key=None)
    limit = current.rate_limit_per_minute or settings.MAILHUB_API_RATE_LIMIT_PER_MINUTE
    try:
        decision = api_key_rate_check(key_id=current.id, limit=limit)
    except IntegrityError:  # deleted since it was read: its counter row cannot be written
        return _MailDecision(key=None)
    return _MailDecision(key=current, wait_seconds=decision.wait_seconds)


def submission_accept(
    *, key: ApiKey, mail_from: str, rcpt_tos: Sequence[str], content: bytes
) -> Message:
    """Validate a submitted message and accept it for the key's client; committed on return.
    ``UnacceptableMessage`` says why a message is refused."""
    draft = submission_draft(content=content, mail_from=mail_from, rcpt_tos=rcpt_tos)
    [message] = messages_accept(client=key.client, drafts=[draft], test_mode=key.test_mode)
    return message


def _address_problem(address: str) -> str:
    """What the API would say of this recipient address; "" if nothing."""
    try:
        AddressField().run_validation(address)
    except serializers.ValidationError as refused:
        detail = refused.detail
        return str(detail[0] if isinstance(detail, list) else detail)
    return ""


# -- the SMTP side (the event loop) ------------------------------------------------------------


class SubmissionHandler(ThreadedHandler):
    """aiosmtpd's handler: MAIL, RCPT and DATA, each answered from the API's rules."""

    def __init__(self, config: SubmissionConfig) -> None:
        super().__init__(threads=config.threads, name="submission")
        self.config = config
        #: Authenticated connections per key id, in this process. Only the loop touches it.
        self.connections: Counter[int] = Counter()

    async def authenticate(self, server: SubmissionSMTP, password: bytes) -> AuthResult:
        try:
            secret = password.decode("ascii").strip()
        except UnicodeDecodeError:
            secret = ""
        key = await self.run(lambda: _key_for(secret)) if secret else None
        if key is None:
            logger.info("AUTH with a wrong key from %s", server.peer_host)
            return AuthResult(success=False, handled=False)
        if self.connections[key.id] >= self.config.max_connections_per_key:
            logger.info("key %s refused: over its connection limit", key.prefix)
            await server.push(
                f"421 4.7.0 This API key already has {self.config.max_connections_per_key} "
                "connections open; try again later"
            )
            server.close()
            return AuthResult(success=False, handled=True)
        self.connections[key.id] += 1
        server.key = key
        return AuthResult(success=True, auth_data=key)

    async def handle_exception(self, error: Exception) -> str:
        """Anything a command raised (aiosmtpd would quote the exception to the client)."""
        if isinstance(error, TLSSetupException):  # a client that gave up the handshake
            logger.info("TLS handshake failed: %s", error.__cause__ or error)
        else:
            logger.error("SMTP session failed", exc_info=error)
        return "451 4.3.0 Mailhub could not handle that command; try again later"

    def release(self, key_id: int) -> None:
        self.connections[key_id] -= 1
        if self.connections[key_id] <= 0:
            del self.connections[key_id]

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        connection = _connection(server)
        key = connection.authenticated_key()
        try:
            decision = await self.run(lambda: _mail_decision(key))
        except Exception:
            logger.exception("could not check key %s", key.prefix)
            return "451 4.3.0 Mailhub cannot take mail right now; try again later"
        if decision.key is None:
            session.authenticated = False
            connection.release_key()
            return "530 5.7.0 The API key is no longer valid (revoked); authenticate again"
        connection.key = decision.key  # a rate limit changed since AUTH applies from now on
        if decision.wait_seconds > 0:
            limit = decision.key.rate_limit_per_minute or settings.MAILHUB_API_RATE_LIMIT_PER_MINUTE
            return (
                f"451 4.7.1 Rate limit of {limit} messages per minute reached for this API key; "
                f"try again in {math.ceil(decision.wait_seconds)} s"
            )
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() in (known.lower() for known in envelope.rcpt_tos):
            return "250 2.1.5 OK (already a recipient)"
        if len(envelope.rcpt_tos) >= self.config.max_recipients:
            return (
                f"452 4.5.3 At most {self.config.max_recipients} recipients per message; "
                "send to the others in another message"
            )
        if problem := _address_problem(address):
            return f"553 5.1.3 {reply_text(problem)}"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        key = _connection(server).authenticated_key()
        content = envelope.original_content or b""
        mail_from = envelope.mail_from or ""
        recipients = list(envelope.rcpt_tos)
        self.in_flight += 1
        try:
            message = await self.run(
                lambda: submission_accept(
                    key=key, mail_from=mail_from, rcpt_tos=recipients, content=content
                )
            )
        except UnacceptableMessage as refused:
            reason = reply_text(str(refused))
            logger.info("refused a message of key %s: %s", key.prefix, reason)
            return f"550 5.6.0 {reason}"
        except SenderDomainNotVerified as refused:
            reason = reply_text(refused.message)
            logger.info("refused a message of key %s: %s", key.prefix, reason)
            return f"550 5.7.1 {reason}"
        except Exception:
            logger.exception("could not store a message of key %s", key.prefix)
            return "451 4.3.0 Mailhub could not store the message; try again later"
        finally:
            self.in_flight -= 1
        return f"250 2.0.0 OK queued as {message.id}"


class SubmissionSMTP(SMTP):
    """aiosmtpd's SMTP session, with API keys for passwords checked off the event loop, the
    per-key connection count, and plain-text AUTH from loopback when development allows it."""

    def __init__(self, handler: SubmissionHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.submission = handler
        #: The key this connection authenticated with, counted in the handler's `connections`.
        self.key: ApiKey | None = None
        self.peer_host = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # not the TLS layer STARTTLS puts in between
        super().connection_made(transport)
        if first:
            peer = transport.get_extra_info("peername")
            self.peer_host = str(peer[0]) if peer else ""
            if self.submission.config.allow_plaintext_loopback and _is_loopback(self.peer_host):
                self._auth_require_tls = False

    def connection_lost(self, error: Exception | None) -> None:
        self.release_key()
        super().connection_lost(error)

    def authenticated_key(self) -> ApiKey:
        # auth_required: aiosmtpd answers MAIL, RCPT and DATA with 530 before AUTH.
        assert self.key is not None
        return self.key

    def release_key(self) -> None:
        if self.key is not None:
            self.submission.release(self.key.id)
            self.key = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # aiosmtpd's mechanisms parse the exchange, then call a synchronous `_authenticate`; the
    # check needs the database, which is never touched from the event loop. So `_authenticate`
    # only hands the credentials back, and the check runs afterwards, in a thread.

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        return AuthResult(success=False, handled=False, auth_data=auth_data)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._checked(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._checked(await super().auth_LOGIN(_, args))

    async def _checked(self, parsed: AuthResult) -> AuthResult:
        if not isinstance(parsed.auth_data, LoginPassword):
            return parsed  # the exchange failed, and aiosmtpd has answered
        return await self.submission.authenticate(self, parsed.auth_data.password)


def _connection(server: SMTP) -> SubmissionSMTP:
    assert isinstance(server, SubmissionSMTP)  # SubmissionController.factory makes them
    return server


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.removeprefix("::ffff:")).is_loopback
    except ValueError:
        return False


class SubmissionController(DrainingController):
    """Runs the server on its own event loop in a thread (``start``, ``stop``,
    ``stop_gracefully``: the messages being stored get their 250)."""

    drain_seconds = DRAIN_SECONDS

    def __init__(self, config: SubmissionConfig) -> None:
        self.config = config
        self.submission = SubmissionHandler(config)
        super().__init__(
            self.submission,
            hostname=config.host,
            port=config.port,
            server_hostname=config.hostname,
            ident="Mailhub submission",
            data_size_limit=config.max_message_bytes,
            enable_SMTPUTF8=False,  # addresses are ASCII (the API's rule), replies too
            tls_context=config.tls_context,
            require_starttls=False,  # MAIL before STARTTLS gets 530 (no AUTH), not a TLS error
            auth_required=True,
            auth_require_tls=True,
            command_call_limit={"AUTH": AUTH_ATTEMPTS, "*": 2**31},
        )

    def factory(self) -> SubmissionSMTP:
        return SubmissionSMTP(self.submission, **self.SMTP_kwargs)
