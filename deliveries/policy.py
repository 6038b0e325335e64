"""The one place that decides what an SMTP reply means and when to try again.

Pure functions over plain values: no database, no network, so every rule is unit-tested.
"""

from __future__ import annotations

import enum
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from deliveries.states import DeliveryStatus

# RFC 3463 enhanced status code at the start of the reply text, e.g. "5.1.1 User unknown".
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


class Stage(enum.StrEnum):
    """Where in the SMTP conversation a reply came from; some codes mean different things."""

    CONNECT = "connect"  # connection, greeting, EHLO, STARTTLS, AUTH
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


@dataclass(frozen=True)
class SmtpReply:
    """What the server said (or ``code=None`` when it said nothing: timeout, refused, dropped)."""

    code: int | None
    text: str
    stage: Stage
    relay: str = ""  # which relay answered (or failed to)

    @property
    def enhanced_code(self) -> str:
        match = _ENHANCED.match(self.text)
        return ".".join(match.groups()) if match else ""

    def __str__(self) -> str:
        code = self.code if self.code is not None else "no reply"
        return f"{code} {self.text} (at {self.stage})"


class ReplyClass(enum.StrEnum):
    SUCCESS = "success"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


def classify(reply: SmtpReply) -> ReplyClass:
    """Map a reply to success, temporary failure (retry) or permanent failure (bounce)."""
    code = reply.code
    if code is not None and 200 <= code < 300:
        return ReplyClass.SUCCESS
    if code is None or reply.stage is Stage.CONNECT:
        # No answer, or the relay refused *us* (greeting, TLS, AUTH): nothing is known about the
        # recipient, so bouncing (and suppressing) the address would be wrong. Try again later.
        return ReplyClass.TEMPORARY
    if reply.stage is Stage.RCPT and code == 552:
        # RFC 5321 4.5.3.1.10: 552 to RCPT from older servers means "too many recipients";
        # clients are told to treat it as 452.
        return ReplyClass.TEMPORARY
    if 500 <= code < 600:
        return ReplyClass.PERMANENT
    # 4xx, and anything outside the protocol (a confused server), is worth another try.
    return ReplyClass.TEMPORARY


def is_relay_fault(reply: SmtpReply) -> bool:
    """The relay failed us (unreachable, refused us, out of time) before any recipient was
    named: nothing is known about the message or its recipients."""
    return reply.stage is Stage.CONNECT and classify(reply) is not ReplyClass.SUCCESS


def is_hard_bounce(reply: SmtpReply) -> bool:
    """A permanent failure that is about the address itself, so it should be suppressed.

    A 5xx to RCPT refuses the recipient; after DATA only an RFC 3463 "5.1.x" (address status)
    says the same. A 5xx to MAIL FROM, or a content rejection, says nothing about the recipient.
    """
    if classify(reply) is not ReplyClass.PERMANENT:
        return False
    return reply.stage is Stage.RCPT or reply.enhanced_code.startswith("5.1.")


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float
    factor: float
    cap_seconds: float
    jitter: float
    max_attempts: int

    def delay(self, attempt: int, *, rand: Callable[[], float] = random.random) -> timedelta:
        """Wait before attempt ``attempt + 1``, after ``attempt`` tries have failed.

        ``min(cap, base * factor ** (attempt - 1))``, reduced by up to ``jitter`` of itself so
        that mail deferred together (a relay outage) does not come back all at once.
        """
        if attempt < 1:
            raise ValueError("delay is defined after at least one attempt")
        # Cap the exponent first: factor ** attempt overflows a float long before attempts end.
        exponent = min(attempt - 1, 64)
        full = min(self.cap_seconds, self.base_seconds * self.factor**exponent)
        jitter = min(max(self.jitter, 0.0), 1.0)
        return timedelta(seconds=full * (1 - jitter * rand()))


@dataclass(frozen=True)
class Decision:
    status: DeliveryStatus
    next_attempt_at: datetime | None = None
    reason: str = ""


def decide(
    *,
    reply_class: ReplyClass,
    attempts: int,
    now: datetime,
    expires_at: datetime,
    policy: RetryPolicy,
    relay_fault: bool = False,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """What becomes of a delivery after a failed or successful attempt.

    ``attempts`` counts the attempts that failed for the message's own sake, this one included
    unless ``relay_fault``: an attempt that failed because no relay could be reached says
    nothing about the message and does not use up its attempts (the lifetime still bounds it).
    """
    if reply_class is ReplyClass.SUCCESS:
        return Decision(DeliveryStatus.DELIVERED)
    if reply_class is ReplyClass.PERMANENT:
        return Decision(DeliveryStatus.BOUNCED, reason="permanent failure")
    if not relay_fault and attempts >= policy.max_attempts:
        return Decision(DeliveryStatus.FAILED, reason=f"gave up after {attempts} attempts")
    next_attempt_at = now + policy.delay(max(attempts, 1), rand=rand)
    if next_attempt_at >= expires_at:
        return Decision(DeliveryStatus.FAILED, reason="message lifetime exceeded")
    return Decision(DeliveryStatus.DEFERRED, next_attempt_at=next_attempt_at)


def decide_lost(
    *,
    attempts: int,
    lost_attempts: int,
    quarantine_after: int,
    now: datetime,
    expires_at: datetime,
    policy: RetryPolicy,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """What becomes of a delivery whose attempt was lost: its worker died (the lease expired) or
    its task failed before reporting. Nothing is known about the recipient, so it is retried,
    counted as an attempt, unless ``lost_attempts`` (this one included) reached
    ``quarantine_after``: a delivery that keeps dying with its worker is the likeliest cause, and
    is failed rather than sent alongside healthy mail again.
    """
    if lost_attempts >= quarantine_after:
        return Decision(
            DeliveryStatus.FAILED,
            reason=f"quarantined: {lost_attempts} attempts were lost (the worker died or its "
            "task failed while sending it); not tried again",
        )
    return decide(
        reply_class=ReplyClass.TEMPORARY,
        attempts=attempts,
        now=now,
        expires_at=expires_at,
        policy=policy,
        rand=rand,
    )
