"""`send_test_mail` on the real stack: it waits for the outcome and says it by its exit code."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from deliveries.models import Message
from deliveries.states import MessageStatus
from tests.integration.conftest import wait_until_final

pytestmark = pytest.mark.integration


def test_send_test_mail_goes_through_the_pipeline_and_exits_0_when_delivered(sink):
    out = StringIO()

    call_command("send_test_mail", "ann@example.com", "--timeout", "60", stdout=out)

    [received] = sink.wait_for(1)
    assert received.rcpt_tos == ("ann@example.com",)
    assert received.parsed["Subject"].startswith("Mailhub test message")
    message = Message.objects.get()
    assert message.priority == "high" and message.client.name == "operations"
    text = out.getvalue()
    assert f"Accepted message {message.id}" in text
    assert "attempt 1 by" in text and "delivered: 250" in text
    assert "Delivered in" in text


def test_send_test_mail_exits_3_when_the_relay_refuses_the_recipient(sink):
    sink.script_rcpt("nobody@example.com", "550 5.1.1 no such user")

    with pytest.raises(CommandError, match="bounced: 550") as error:
        call_command("send_test_mail", "nobody@example.com", "--timeout", "60", stdout=StringIO())

    assert error.value.returncode == 3


def test_send_test_mail_exits_4_when_no_outcome_comes_in_time(sink):
    # The relay takes longer than the command waits. (On the handler: SmtpSink only forwards
    # reads, so `sink.delay_seconds = 3` would set an attribute nobody reads.)
    sink.handler.delay_seconds = 3

    with pytest.raises(CommandError, match=r"No outcome within 0\.5 s") as error:
        call_command("send_test_mail", "ann@example.com", "--timeout", "0.5", stdout=StringIO())

    assert error.value.returncode == 4
    # The message was not lost: it is delivered once the slow relay answers.
    assert wait_until_final(Message.objects.get().id).status == MessageStatus.DELIVERED
