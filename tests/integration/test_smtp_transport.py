"""SmtpTransport against real SMTP servers on loopback: the aiosmtpd sink (offering PIPELINING
or not, so both ways of talking are held to the same replies) and, to show that commands really
are pipelined, a bare server that answers nothing until MAIL, RCPT and DATA have all arrived."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller

from deliveries.capture import CaptureHandler
from deliveries.policy import SmtpReply, Stage
from deliveries.smtp import Envelope, SmtpTransport
from mailhub.env import parse_smtp_url
from tests.support.sink import DROP, MAIL_421, SmtpSink, free_port

pytestmark = pytest.mark.integration

CONTENT = b"Subject: hi\r\n\r\nline one\r\n.a line with a leading dot\r\n.\r\nlast\r\n"


@pytest.fixture(scope="module")
def server() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(params=[True, False], ids=["pipelining", "one command at a time"])
def sink(server: SmtpSink, request) -> SmtpSink:
    server.reset()
    server.handler.pipelining = request.param
    return server


@pytest.fixture
def transport(sink: SmtpSink) -> Iterator[SmtpTransport]:
    transport = SmtpTransport(parse_smtp_url("test", sink.url), timeout=2, data_timeout=2)
    yield transport
    transport.close()


def send(transport: SmtpTransport, *recipients: str, content: bytes = CONTENT):
    envelope = Envelope(sender="bounce@shop.test", recipients=recipients, content=content)
    replies = transport.send(envelope, deadline=time.monotonic() + 10)
    return {address: (reply.code, reply.stage) for address, reply in replies.items()}


def test_each_recipient_gets_its_own_reply_and_the_content_arrives_unchanged(sink, transport):
    sink.script_rcpt("bob@example.com", "550 5.1.1 no such user")
    sink.script_rcpt("cy@example.com", "451 4.3.0 later")

    replies = send(transport, "ann@example.com", "bob@example.com", "cy@example.com")

    assert replies == {
        "ann@example.com": (250, Stage.DATA),
        "bob@example.com": (550, Stage.RCPT),
        "cy@example.com": (451, Stage.RCPT),
    }
    [received] = sink.wait_for(1)
    assert received.mail_from == "bounce@shop.test"
    assert received.rcpt_tos == ("ann@example.com",)
    assert received.content.replace(b"\r\n", b"\n") == CONTENT.replace(b"\r\n", b"\n")


def test_a_message_no_recipient_took_is_not_sent_and_the_connection_goes_on(sink, transport):
    sink.script_rcpt("bob@example.com", "550 5.1.1 no such user")

    assert send(transport, "bob@example.com") == {"bob@example.com": (550, Stage.RCPT)}
    assert send(transport, "ann@example.com") == {"ann@example.com": (250, Stage.DATA)}

    assert [m.rcpt_tos for m in sink.wait_for(1)] == [("ann@example.com",)]
    assert sink.connections == 1


def test_a_refused_data_is_every_accepted_recipients_reply(sink, transport):
    sink.script_data("554 5.7.1 content refused")

    assert send(transport, "ann@example.com", "bob@example.com") == {
        "ann@example.com": (554, Stage.DATA),
        "bob@example.com": (554, Stage.DATA),
    }
    assert send(transport, "cy@example.com") == {"cy@example.com": (250, Stage.DATA)}
    assert sink.connections == 1


def test_a_421_to_mail_ends_the_connection_and_the_next_message_opens_another(sink, transport):
    sink.fail_randomly([MAIL_421], fraction=1.0)
    assert send(transport, "ann@example.com", "bob@example.com") == {
        "ann@example.com": (421, Stage.MAIL),
        "bob@example.com": (421, Stage.MAIL),
    }
    sink.stop_failing()

    assert send(transport, "ann@example.com") == {"ann@example.com": (250, Stage.DATA)}
    assert sink.connections == 2


def test_a_connection_dropped_during_data_is_a_reply_without_a_code(sink, transport):
    sink.script_data(DROP)

    [(code, stage)] = send(transport, "ann@example.com").values()
    assert (code, stage) == (None, Stage.DATA)
    assert send(transport, "ann@example.com") == {"ann@example.com": (250, Stage.DATA)}
    assert sink.connections == 2


def test_a_refused_mail_from_is_every_recipients_reply_and_the_connection_goes_on(sink, transport):
    sink.script_mail("550 5.7.1 sender refused")

    assert send(transport, "ann@example.com", "bob@example.com") == {
        "ann@example.com": (550, Stage.MAIL),
        "bob@example.com": (550, Stage.MAIL),
    }
    assert send(transport, "ann@example.com") == {"ann@example.com": (250, Stage.DATA)}
    assert [m.rcpt_tos for m in sink.wait_for(1)] == [("ann@example.com",)]
    assert sink.connections == 1


@pytest.mark.parametrize(
    "recipient",
    ["ann@example.com>\r\nRCPT TO:<evil@evil.test", "ann@example.com>\nRCPT TO:<evil@evil.test"],
    ids=["CRLF", "LF"],
)
def test_an_envelope_address_with_a_line_break_never_becomes_a_command(sink, transport, recipient):
    with pytest.raises(ValueError, match="line break"):
        send(transport, recipient)

    assert send(transport, "bob@example.com") == {"bob@example.com": (250, Stage.DATA)}
    assert [m.rcpt_tos for m in sink.wait_for(1)] == [("bob@example.com",)]
    assert "evil@evil.test" not in sink.addresses_received()


class WaitingServer:
    """Offers PIPELINING, then answers nothing until MAIL, RCPT and DATA have all arrived: a
    client that waits for the reply to MAIL before it sends RCPT times out here. Then it sends
    ``answers``; if they end in 354 it reads the message, else it closes the connection."""

    def __init__(self, answers: bytes = b"250 OK\r\n250 OK\r\n354 go on\r\n") -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.answers = answers
        self.commands: list[bytes] = []
        self.received = b""
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 waiting ESMTP\r\n")
            lines.readline()  # EHLO
            conn.sendall(b"250-waiting\r\n250 PIPELINING\r\n")
            self.commands = [lines.readline() for _ in range(3)]  # MAIL, RCPT, DATA: no reply
            conn.sendall(self.answers)
            if not self.answers.rstrip().rsplit(b"\r\n", 1)[-1].startswith(b"354"):
                return
            while (line := lines.readline()) not in (b".\r\n", b""):
                self.received += line
            conn.sendall(b"250 2.0.0 queued\r\n")
            lines.readline()  # QUIT
            conn.sendall(b"221 bye\r\n")

    def send(self, content: bytes = b"Subject: x\r\n\r\nhi\r\n"):
        transport = SmtpTransport(
            parse_smtp_url("test", f"smtp://127.0.0.1:{self.port}"), timeout=2, data_timeout=2
        )
        try:
            return send(transport, "ann@example.com", content=content)
        finally:
            transport.close()
            self._listener.close()
            self._thread.join(5)


def test_with_a_server_that_offers_it_the_commands_up_to_data_go_out_in_one_write():
    server = WaitingServer()

    assert server.send() == {"ann@example.com": (250, Stage.DATA)}
    assert server.commands == [
        b"MAIL FROM:<bounce@shop.test>\r\n",
        b"RCPT TO:<ann@example.com>\r\n",
        b"DATA\r\n",
    ]
    assert server.received == b"Subject: x\r\n\r\nhi\r\n"


def test_a_refused_mail_from_decides_even_when_the_server_hangs_up_after_it():
    server = WaitingServer(answers=b"550 5.7.1 sender refused\r\n")

    assert server.send() == {"ann@example.com": (550, Stage.MAIL)}


def test_replies_keep_their_text(sink, transport):
    sink.script_rcpt("bob@example.com", "550 5.1.1 <bob@example.com>: no such user")
    envelope = Envelope(sender="bounce@shop.test", recipients=["bob@example.com"], content=b"x")

    [reply] = transport.send(envelope, deadline=time.monotonic() + 10).values()

    assert reply == SmtpReply(
        550, "5.1.1 <bob@example.com>: no such user", Stage.RCPT, str(transport.relay)
    )


def test_the_capture_server_offers_pipelining_and_keeps_what_it_was_sent(tmp_path):
    capture = Controller(CaptureHandler(tmp_path), hostname="127.0.0.1", port=free_port())
    capture.start()
    transport = SmtpTransport(
        parse_smtp_url("test", f"smtp://127.0.0.1:{capture.port}"), timeout=2, data_timeout=2
    )
    try:
        replies = send(transport, "ann@example.com", "bob@example.com")
        offered = transport._conn is not None and transport._conn.has_extn("pipelining")
    finally:
        transport.close()
        capture.stop()

    assert offered
    assert replies == {
        "ann@example.com": (250, Stage.DATA),
        "bob@example.com": (250, Stage.DATA),
    }
    [captured] = tmp_path.glob("*.eml")
    assert captured.read_bytes() == (
        b"X-Capture-Envelope-From: bounce@shop.test\r\n"
        b"X-Capture-Envelope-To: ann@example.com, bob@example.com\r\n" + CONTENT
    )
