"""RelayPool: weights, failover, the circuit breaker. Transports here are recording fakes that
answer like SmtpTransport does; the real transport is exercised in the integration tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from deliveries.policy import SmtpReply, Stage
from deliveries.smtp import Envelope, RelayPool
from mailhub.env import SmtpRelay

ENVELOPE = Envelope(sender="s@shop.test", recipients=["ann@example.com"], content=b"x")
ACCEPTED = SmtpReply(250, "2.0.0 OK", Stage.DATA)
UNREACHABLE = SmtpReply(None, "cannot connect: refused", Stage.CONNECT)


@dataclass
class FakeRelay:
    name: str
    weight: int = 1
    reply: SmtpReply = ACCEPTED
    sent: list[Envelope] = field(default_factory=list)

    @property
    def relay(self) -> SmtpRelay:
        return SmtpRelay(host=self.name, port=25, weight=self.weight)

    def send(self, envelope: Envelope, *, deadline: float) -> dict[str, SmtpReply]:
        self.sent.append(envelope)
        return dict.fromkeys(envelope.recipients, self.reply)

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_mail_is_spread_over_the_relays_by_weight():
    heavy, light = FakeRelay("heavy", weight=3), FakeRelay("light", weight=1)
    points = iter([i / 100 for i in range(100)])
    pool = RelayPool([heavy, light], cooldown=30, rand=lambda: next(points))

    for _ in range(100):
        pool.send(ENVELOPE, deadline=1e9)

    assert (len(heavy.sent), len(light.sent)) == (75, 25)


def test_an_unreachable_relay_hands_the_same_attempt_to_the_next_one():
    dead, alive = FakeRelay("dead", reply=UNREACHABLE), FakeRelay("alive")
    pool = RelayPool([dead, alive], cooldown=30, rand=lambda: 0.0)

    replies = pool.send(ENVELOPE, deadline=1e9)

    assert replies == {"ann@example.com": ACCEPTED}
    assert len(dead.sent) == 1 and len(alive.sent) == 1


def test_a_failed_relay_stays_out_of_rotation_until_its_cooldown_ends():
    clock = Clock()
    dead, alive = FakeRelay("dead", reply=UNREACHABLE), FakeRelay("alive")
    pool = RelayPool([dead, alive], cooldown=30, rand=lambda: 0.0, clock=clock)
    pool.send(ENVELOPE, deadline=1e9)

    clock.now += 29
    pool.send(ENVELOPE, deadline=1e9)
    assert len(dead.sent) == 1  # skipped while cooling down

    clock.now += 2
    dead.reply = ACCEPTED  # it came back
    pool.send(ENVELOPE, deadline=1e9)
    assert len(dead.sent) == 2  # tried again after the cooldown


def test_a_recipient_refusal_is_not_a_relay_failure():
    refused = SmtpReply(550, "5.1.1 no such user", Stage.RCPT)
    first, second = FakeRelay("first", reply=refused), FakeRelay("second")
    pool = RelayPool([first, second], cooldown=30, rand=lambda: 0.0)

    assert pool.send(ENVELOPE, deadline=1e9) == {"ann@example.com": refused}
    assert second.sent == []


def test_when_every_relay_fails_the_last_failure_is_the_answer():
    one, two = FakeRelay("one", reply=UNREACHABLE), FakeRelay("two", reply=UNREACHABLE)
    pool = RelayPool([one, two], cooldown=30, rand=lambda: 0.0)

    assert pool.send(ENVELOPE, deadline=1e9) == {"ann@example.com": UNREACHABLE}
    assert len(one.sent) == len(two.sent) == 1


def test_with_every_relay_cooling_down_nothing_is_tried():
    clock = Clock()
    only = FakeRelay("only", reply=UNREACHABLE)
    pool = RelayPool([only], cooldown=30, rand=lambda: 0.0, clock=clock)
    pool.send(ENVELOPE, deadline=1e9)

    [reply] = pool.send(ENVELOPE, deadline=1e9).values()

    assert len(only.sent) == 1
    assert reply.code is None and reply.stage is Stage.CONNECT
    assert "no relay available" in reply.text
