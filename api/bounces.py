"""The bounces server: bounce and complaint reports come back to Mailhub by mail.

Each delivery leaves with its own envelope sender, ``bounce+<signed token>@MAILHUB_BOUNCE_DOMAIN``
(VERP, ``deliveries.tokens``). A server that accepts the mail and fails to deliver it later
sends its report (a DSN) there; the bounce domain's MX points at this process. Feedback loops
(Yahoo, AOL, Microsoft...) send complaints (ARF) to the address an operator registered with
them, any address on the bounce domain; the complaint quotes the original message, whose
envelope sender (``Original-Mail-From``, the quoted ``Return-Path``) is the VERP address.

A report counts only through a token that verifies (``delivery_of_verp_address``):

- a **hard bounce** (``Action: failed``, a 5.x.x status), sent to a VERP address, and naming the
  delivery's own address as a recipient: the delivery moves `delivered` -> `bounced` and the
  address is suppressed (``deliveries_bounce_reported``);
- a **complaint** (``Feedback-Type`` abuse, fraud or virus) whose tokens name one delivery: the
  address is suppressed with reason `complaint` (``deliveries_complain``).

Anything else (delayed, a token that does not verify, another recipient, an auto-reply, a
message that is no report) is logged, one line saying why, and dropped. The sender gets 250
either way, once the report is applied or dropped: it must not retry, nor bounce the bounce.

The replies a sending server acts on:

    550 5.7.1   RCPT for an address not on the bounce domain (no relaying), or any RCPT
                while MAILHUB_BOUNCE_DOMAIN is empty
    452 4.5.3   more than MAX_RECIPIENTS recipients in one transaction
    552         larger than MAILHUB_BOUNCES_MAX_MESSAGE_BYTES (advertised with SIZE)
    451 4.3.0   Mailhub could not apply it (the database is away): try again
    250 2.0.0   applied or dropped
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from django.conf import settings
from django.db import DatabaseError

from api.reports import DeliveryReport, FeedbackReport, Report, clean_text, parse_reports
from api.smtp_threads import DrainingController, ThreadedHandler
from deliveries.selectors import delivery_address
from deliveries.services import deliveries_bounce_reported, deliveries_complain
from deliveries.tokens import delivery_of_verp_address

logger = logging.getLogger(__name__)


#: Recipients of one transaction (a report has one; a few more are tolerated).
MAX_RECIPIENTS = 20
#: Reports are applied in this many threads (each with its own database connection).
THREADS = 2
#: How long a stopping server lets reports in flight finish.
DRAIN_SECONDS = 20.0


@dataclass(frozen=True)
class BouncesConfig:
    host: str
    port: int
    bounce_domain: str  # "": every RCPT is refused
    max_message_bytes: int
    hostname: str


def bounces_config(**overrides: Any) -> BouncesConfig:
    """The server's configuration from the settings (``overrides`` win: tests, the command)."""
    host, port = settings.MAILHUB_BOUNCES_BIND
    values: dict[str, Any] = {
        "host": host,
        "port": port,
        "bounce_domain": settings.MAILHUB_BOUNCE_DOMAIN,
        "max_message_bytes": settings.MAILHUB_BOUNCES_MAX_MESSAGE_BYTES,
        "hostname": settings.MAILHUB_SMTP_HELO_NAME or socket.getfqdn(),
    }
    values.update(overrides)
    return BouncesConfig(**values)


# -- which deliveries a report is about, and what it does to them --------------------------


def report_deliveries(report: Report, *, rcpt: str, bounce_domain: str) -> set[int]:
    """The deliveries the verified VERP tokens of a report name: the envelope recipient it was
    sent to, and for a complaint also the quoted message's envelope sender. Never trusts
    anything else in the report."""
    addresses = [rcpt]
    if isinstance(report, FeedbackReport):
        addresses.append(report.original_mail_from)
        if report.original is not None:
            addresses.append(report.original.return_path)
    found = (delivery_of_verp_address(a, bounce_domain=bounce_domain) for a in addresses if a)
    return {delivery_id for delivery_id in found if delivery_id is not None}


@dataclass(frozen=True)
class Outcome:
    applied: bool
    why: str  # one line, for the log


def report_apply(*, report: Report, rcpt: str, bounce_domain: str) -> Outcome:
    """Apply one report received for ``rcpt``, or say why it is dropped."""
    ids = report_deliveries(report, rcpt=rcpt, bounce_domain=bounce_domain)
    if isinstance(report, FeedbackReport):
        return _complaint_apply(report, ids)
    if not ids:
        return Outcome(False, f"{report.format} report to {clean_text(rcpt)}: no valid VERP token")
    [delivery_id] = ids
    return _bounce_apply(report, delivery_id)


def _bounce_apply(report: DeliveryReport, delivery_id: int) -> Outcome:
    address = delivery_address(delivery_id=delivery_id)
    if address is None:
        return Outcome(False, f"delivery {delivery_id} does not exist (purged?)")
    about = [status for status in report.recipients if status.is_about(address)]
    if not about:
        named = ", ".join(s.final_recipient or s.original_recipient for s in report.recipients)
        return Outcome(
            False,
            f"{report.format} report about delivery {delivery_id} names {named or 'no one'}, "
            "not its address",
        )
    hard = next((status for status in about if status.hard), None)
    if hard is None:
        seen = ", ".join(f"{s.action or 'no action'} {s.status or '?'}" for s in about)
        return Outcome(False, f"delivery {delivery_id}: not a hard bounce ({seen}); ignored")
    moved = deliveries_bounce_reported(
        delivery_ids=[delivery_id],
        detail=hard.diagnostic or f"{hard.action}; {hard.status}",
        smtp_code=hard.smtp_code,
        enhanced_code=hard.status,
    )
    if not moved:
        return Outcome(
            False, f"delivery {delivery_id} is no longer delivered (a repeated report?): no change"
        )
    return Outcome(True, f"delivery {delivery_id} bounced ({hard.status}, {report.format})")


def _complaint_apply(report: FeedbackReport, ids: set[int]) -> Outcome:
    if not report.complaint:
        return Outcome(False, f"feedback of type {report.feedback_type or '(none)'!r} ignored")
    if not ids:
        return Outcome(False, "complaint without a valid VERP token")
    if len(ids) > 1:
        return Outcome(False, f"complaint whose tokens name {len(ids)} deliveries")
    source = report.user_agent or report.reporting_mta or "a feedback loop"
    complained = deliveries_complain(
        delivery_ids=ids, detail=clean_text(f"{report.feedback_type} report from {source}")
    )
    [delivery_id] = ids
    if not complained:
        return Outcome(False, f"delivery {delivery_id}: complaint already recorded, or not sent")
    return Outcome(
        True, f"delivery {delivery_id}: complaint ({report.feedback_type}) from {source}"
    )


def reports_receive(
    *, content: bytes, rcpt_tos: list[str], mail_from: str, config: BouncesConfig
) -> None:
    """Read one received message and apply each report in it for each recipient; log each
    outcome. Database errors propagate (the caller answers 451)."""
    reports = parse_reports(content, max_bytes=config.max_message_bytes)
    if not reports:
        logger.info(
            "dropped a message from <%s> to %s: no bounce or complaint report in it",
            clean_text(mail_from).strip("<>"),
            clean_text(", ".join(rcpt_tos)),
        )
        return
    for rcpt in rcpt_tos:
        for report in reports:
            outcome = report_apply(report=report, rcpt=rcpt, bounce_domain=config.bounce_domain)
            logger.info("%s: %s", "applied" if outcome.applied else "dropped", outcome.why)


# -- the SMTP side ------------------------------------------------------------------------


class BouncesHandler(ThreadedHandler):
    """aiosmtpd's handler: RCPT for the bounce domain only; DATA read and applied in a thread."""

    def __init__(self, config: BouncesConfig) -> None:
        super().__init__(threads=THREADS, name="bounces")
        self.config = config

    async def handle_exception(self, error: Exception) -> str:
        logger.error("SMTP session failed", exc_info=error)
        return "451 4.3.0 Mailhub could not handle that command; try again later"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        domain = self.config.bounce_domain
        if not domain:
            return "550 5.7.1 This server takes no mail: no bounce domain is configured"
        if address.rpartition("@")[2].lower().rstrip(".") != domain:
            return f"550 5.7.1 Relaying denied: this server takes mail for @{domain} only"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return f"452 4.5.3 At most {MAX_RECIPIENTS} recipients per message"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        rcpt_tos = list(envelope.rcpt_tos)
        mail_from = envelope.mail_from or ""
        self.in_flight += 1
        try:
            await self.run(
                lambda: reports_receive(
                    content=content, rcpt_tos=rcpt_tos, mail_from=mail_from, config=self.config
                )
            )
        except DatabaseError as error:
            logger.error("could not apply a report (database): %s", clean_text(str(error)))
            return "451 4.3.0 Mailhub could not take the report now; try again later"
        except Exception:
            logger.exception(
                "could not apply a report from <%s>", clean_text(mail_from).strip("<>")
            )
            return "451 4.3.0 Mailhub could not take the report now; try again later"
        finally:
            self.in_flight -= 1
        return "250 2.0.0 OK"


class BouncesController(DrainingController):
    """Runs the server on its own event loop in a thread (``start``, ``stop``,
    ``stop_gracefully``: the reports being applied get their reply)."""

    drain_seconds = DRAIN_SECONDS

    def __init__(self, config: BouncesConfig) -> None:
        super().__init__(
            BouncesHandler(config),
            hostname=config.host,
            port=config.port,
            server_hostname=config.hostname,
            ident="Mailhub bounces",
            data_size_limit=config.max_message_bytes,
            enable_SMTPUTF8=True,  # RFC 6533 reports about international addresses
        )
