"""Events an ESP relay reports by webhook (SES, SendGrid, Mailgun, Postmark), as anymail's
``tracking`` signal hands them over after checking their signature (``api.esp_webhooks``).

Each event is matched to one of our deliveries through our own records: the relay's id from its
250 reply (``Delivery.relay_message_id``) with the event's recipient, else the Message-ID
header Mailhub wrote. Nothing else in the payload is trusted to name a delivery or a client
(metadata, tags and custom arguments come from the mail itself). Then:

- ``bounced`` (a hard bounce) and ``rejected``: ``deliveries_bounce_reported`` — a `delivered`
  delivery becomes `bounced` and the address is suppressed for its client;
- ``complained``: ``deliveries_complain`` — a `complained` event, the address suppressed;
- ``delivered``: nothing (the relay took it, which Mailhub recorded already); logged at DEBUG;
- anything else (a soft bounce, deferred, opened, ...): ignored.

An event naming no delivery of ours is logged and dropped. A payload field of the wrong type
makes the event unreadable, never an error: the ESP would retry it forever.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from typing import Any

from anymail.signals import AnymailTrackingEvent, EventType

from deliveries.relay_ids import RELAY_ID
from deliveries.selectors import delivery_of_relay_report
from deliveries.services import deliveries_bounce_reported, deliveries_complain

logger = logging.getLogger(__name__)


class Action(enum.Enum):
    BOUNCE = "bounce"
    COMPLAIN = "complain"


@dataclass(frozen=True)
class Report:
    """What one ESP event asks of Mailhub, and how to find the delivery it is about."""

    action: Action
    recipient: str
    relay_ids: tuple[str, ...]  # the relay's ids of the message, as the event gives them
    message_ids: tuple[str, ...]  # Message-ID headers, as the event gives them
    detail: str
    smtp_code: int | None
    enhanced_code: str


_SMTP_CODE = re.compile(r"\b([45]\d\d)\b")
_ENHANCED_CODE = re.compile(r"\b([45]\.\d{1,3}\.\d{1,3})\b")
_LONGEST_FIELD = 1000
# What every ESP puts in an event's recipient: a bare address. Anything else (a display name,
# a line break, a NUL) names nobody we sent to: Mailhub's envelopes are printable ASCII.
_ADDRESS = re.compile(r"[!-~]+@[!-~]+")


def _text(value: Any) -> str:
    """A payload value that should be text, or "" (a number, a list, an object: not text)."""
    return value[:_LONGEST_FIELD] if isinstance(value, str) else ""


def _field(data: Any, *path: str) -> Any:
    """``data[path[0]][path[1]]...``, or None where a step is missing or not an object."""
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _is_hard_bounce(event: AnymailTrackingEvent, esp_name: str) -> bool:
    """Whether a ``bounced`` event is permanent. anymail calls some soft bounces ``bounced``
    too; each ESP says which in its own field."""
    esp_event = event.esp_event
    if esp_name == "Amazon SES":
        return _field(esp_event, "bounce", "bounceType") == "Permanent"
    if esp_name == "SendGrid":  # "blocked" is SendGrid's temporary refusal
        return _field(esp_event, "type") in (None, "bounce")
    if esp_name == "Postmark":
        return _field(esp_event, "Type") == "HardBounce"
    return True  # Mailgun: anymail maps only permanent failures to `bounced`


def _ids(event: AnymailTrackingEvent, esp_name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The relay ids and the Message-ID headers an event names its message by."""
    esp_event = event.esp_event
    given = _text(event.message_id)
    relay_ids = [given] if given and not given.startswith("<") else []
    message_ids = [given] if given.startswith("<") else []
    if esp_name == "Amazon SES":
        message_ids.append(_text(_field(esp_event, "mail", "commonHeaders", "messageId")))
    elif esp_name == "SendGrid":
        # sg_message_id is "<the id of the 250 reply>.<SendGrid's suffix>"; smtp-id is the
        # Message-ID header as SendGrid received it.
        relay_ids.append(_text(_field(esp_event, "sg_message_id")).partition(".")[0])
        message_ids.append(_text(_field(esp_event, "smtp-id")))
    return (
        tuple(i for i in relay_ids if RELAY_ID.fullmatch(i)),
        tuple(i for i in message_ids if i),
    )


def report_of(event: AnymailTrackingEvent, esp_name: str) -> Report | None:
    """What ``event`` asks of Mailhub, or None when it asks nothing (or cannot be read)."""
    if event.event_type in (EventType.BOUNCED, EventType.REJECTED):
        if event.event_type == EventType.BOUNCED and not _is_hard_bounce(event, esp_name):
            return None
        action = Action.BOUNCE
    elif event.event_type == EventType.COMPLAINED:
        action = Action.COMPLAIN
    else:
        return None
    recipient = _text(event.recipient)
    if not _ADDRESS.fullmatch(recipient):
        return None
    relay_ids, message_ids = _ids(event, esp_name)
    response = _text(event.mta_response)
    words = " ".join(filter(None, [_text(event.description), response])) or "no detail given"
    smtp_code = _SMTP_CODE.search(response)
    enhanced_code = _ENHANCED_CODE.search(response)
    return Report(
        action=action,
        recipient=recipient,
        relay_ids=relay_ids,
        message_ids=message_ids,
        # Into a column, a log line and a client's webhook: printable characters only (a NUL
        # or a lone surrogate cannot even be stored).
        detail="".join(
            c for c in f"{esp_name} reported {event.event_type}: {words}" if c.isprintable()
        ),
        smtp_code=int(smtp_code.group(1)) if smtp_code else None,
        enhanced_code=enhanced_code.group(1) if enhanced_code else "",
    )


def esp_event_received(
    sender: object, event: AnymailTrackingEvent, esp_name: str, **kwargs: object
) -> None:
    """anymail's ``tracking`` signal: apply one verified ESP event (see the module's doc)."""
    if event.event_type == EventType.DELIVERED:
        logger.debug("%s reports %s delivered (recorded already)", esp_name, event.message_id)
        return
    report = report_of(event, esp_name)
    if report is None:
        return
    delivery_id = delivery_of_relay_report(
        relay_ids=report.relay_ids, message_ids=report.message_ids, recipient=report.recipient
    )
    if delivery_id is None:
        logger.info(
            "%s %s event names no delivery of ours (ids %s, Message-ID %s); dropped",
            esp_name,
            event.event_type,
            ", ".join(report.relay_ids) or "none",
            ", ".join(report.message_ids) or "none",
        )
        return
    if report.action is Action.BOUNCE:
        moved = deliveries_bounce_reported(
            delivery_ids=[delivery_id],
            detail=report.detail,
            smtp_code=report.smtp_code,
            enhanced_code=report.enhanced_code,
        )
    else:
        moved = deliveries_complain(delivery_ids=[delivery_id], detail=report.detail)
    logger.info(
        "%s %s event for delivery %s: %s",
        esp_name,
        event.event_type,
        delivery_id,
        "recorded" if moved else "nothing to change (recorded before, or not delivered)",
    )
