"""The simulator: how test-mode mail is settled instead of being sent.

A message accepted with a test-mode key (``Message.test_mode``) is claimed, built and recorded
like any other, but the worker hands its envelope to a ``Simulator`` instead of the relay
(``services.sending``). The simulator has the transport's shape and answers each recipient with
an ``SmtpReply`` as a relay would, so ``policy`` classifies it and the state machine moves the
delivery exactly as it would move a live one: the same statuses, attempts, events, webhooks and
suppressions. No connection is opened, nothing leaves the process.

What the simulator answers depends on the recipient. At ``simulator.mailhub.test`` the local
part picks a scenario, and anything after a ``+`` is ignored, so that every test can use
addresses of its own (``bounce+signup-test-7@simulator.mailhub.test``: a bounce suppresses the
address, and a second send to the same one is then `suppressed` without an attempt):

- ``bounce@``: 550 5.1.1 to RCPT: `bounced`, and the address is suppressed (`hard_bounce`).
- ``defer@``: 451 4.7.1 to RCPT on the first attempt, then 250: `deferred` (with the next
  attempt's time), then `delivered` on the retry, after the normal backoff
  (``MAILHUB_RETRY_BASE_SECONDS``, 30 s by default).
- ``complaint@``: 250, `delivered`; then the recipient complains: a `complained` event and the
  address suppressed (`complaint`), as a feedback-loop report would do.
- ``timeout@``: the server never answers (no reply code, like a relay that times out after
  DATA), on every attempt: `deferred` again and again until the retry policy gives up, `failed`
  after ``MAILHUB_MAX_ATTEMPTS`` attempts or the message's lifetime. The one scripted way to a
  `failed` delivery, and a delivery that stays in flight long enough to cancel it.
- any other address, there or anywhere else: 250, `delivered`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from deliveries.policy import SmtpReply, Stage
from deliveries.smtp import Envelope

#: The domain of the scripted addresses. `.test` is reserved (RFC 2606): no real mailbox has it.
SIMULATOR_DOMAIN = "simulator.mailhub.test"
#: What an attempt settled by the simulator records as its relay.
SIMULATOR_RELAY = "simulator"


class Scenario(enum.StrEnum):
    """What the simulator does with a recipient; the local part of its scripted address."""

    DELIVER = "deliver"
    BOUNCE = "bounce"
    DEFER = "defer"
    COMPLAINT = "complaint"
    TIMEOUT = "timeout"


_DELIVERED = SmtpReply(
    250, "2.0.0 OK: simulated delivery, nothing was sent (test mode)", Stage.DATA, SIMULATOR_RELAY
)
_BOUNCED = SmtpReply(
    550,
    "5.1.1 simulated bounce: the mailbox does not exist (test mode)",
    Stage.RCPT,
    SIMULATOR_RELAY,
)
_DEFERRED = SmtpReply(
    451,
    "4.7.1 simulated temporary failure: try again later (test mode)",
    Stage.RCPT,
    SIMULATOR_RELAY,
)
# Said at DATA, after the recipient was accepted, as smtp.SmtpTransport reports a server that
# went silent there: a temporary failure of this message, not a relay fault (a relay fault at
# CONNECT would spend no attempt, and would defer the rest of the worker's batch with it).
_TIMED_OUT = SmtpReply(
    None, "timed out waiting for the server (simulated, test mode)", Stage.DATA, SIMULATOR_RELAY
)

#: What a simulated complaint records as its reply (``services.complaints``).
COMPLAINT_DETAIL = "simulated complaint: the recipient reported the message as spam (test mode)"


def scenario_of(address: str) -> Scenario:
    """The scenario an address asks for; ``DELIVER`` for every address not scripted."""
    local, _, domain = address.rpartition("@")
    if domain.lower() != SIMULATOR_DOMAIN:
        return Scenario.DELIVER
    try:
        return Scenario(local.partition("+")[0].lower())
    except ValueError:
        return Scenario.DELIVER


def simulated_reply(address: str, *, attempt: int) -> SmtpReply:
    """The reply a relay would give for ``address`` at attempt number ``attempt`` (from 1)."""
    scenario = scenario_of(address)
    if scenario is Scenario.BOUNCE:
        return _BOUNCED
    if scenario is Scenario.DEFER:
        return _DEFERRED if attempt <= 1 else _DELIVERED
    if scenario is Scenario.TIMEOUT:
        return _TIMED_OUT
    return _DELIVERED


def complains(address: str) -> bool:
    """Whether the recipient complains once the simulator has delivered to it."""
    return scenario_of(address) is Scenario.COMPLAINT


class Simulator:
    """A ``smtp.Transport`` for one test-mode message: a reply per recipient, nothing sent.

    ``attempts`` gives each recipient's attempt number (the delivery's ``attempts``, which
    counts the one under way), which ``defer@`` answers by.
    """

    def __init__(self, *, attempts: Mapping[str, int]) -> None:
        self._attempts = attempts

    def send(self, envelope: Envelope, *, deadline: float) -> dict[str, SmtpReply]:
        return {
            recipient: simulated_reply(recipient, attempt=self._attempts.get(recipient, 1))
            for recipient in envelope.recipients
        }

    def close(self) -> None:
        """Nothing to close: the simulator holds no connection."""
