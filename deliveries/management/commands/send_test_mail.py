import time
from email.utils import parseaddr

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.utils import timezone

from accounts.services import client_get_or_create
from deliveries.management.commands._common import EXIT_PARTIAL, EXIT_TIMEOUT
from deliveries.models import Attempt, Delivery, Message, Priority
from deliveries.services import MessageDraft, Recipient, message_accept
from deliveries.states import FINISHED_MESSAGE_STATUSES, MessageStatus
from domains.errors import SenderDomainNotVerified


class Command(BaseCommand):
    help = (
        "Send one test message to TO through the whole pipeline (accepted like any message, "
        "published to RabbitMQ, sent by a worker over SMTP) and wait for its outcome, printing "
        "every attempt. Exit codes: 0 delivered; 1 error; 2 usage; 3 finished without being "
        "delivered (bounced, failed, suppressed, cancelled); 4 not finished within --timeout "
        "(it stays queued and may still be delivered: see `mailq`)."
    )

    def add_arguments(self, parser):
        parser.add_argument("to", metavar="TO", help="The recipient address.")
        parser.add_argument(
            "--from",
            dest="sender",
            default=settings.DEFAULT_FROM_EMAIL,
            help="The sender (default: DEFAULT_FROM_EMAIL).",
        )
        parser.add_argument(
            "--priority", choices=[p.value for p in Priority], default=Priority.HIGH
        )
        parser.add_argument(
            "--client",
            default=settings.MAILHUB_OPS_CLIENT,
            help="The client it is sent as (default: MAILHUB_OPS_CLIENT; created if missing).",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=60.0,
            metavar="SECONDS",
            help="How long to wait for the outcome (default 60).",
        )

    def handle(
        self, *args, to: str, sender: str, priority: str, client: str, timeout: float, **options
    ):
        try:
            validate_email(to)
            validate_email(parseaddr(sender)[1])
        except ValidationError as exc:
            raise CommandError(
                f"Not an address: {exc.messages[0]} ({to!r}, from {sender!r})"
            ) from None
        now = timezone.now()
        draft = MessageDraft(
            sender=sender,
            recipients=[Recipient(address=to)],
            subject=f"Mailhub test message {now:%Y-%m-%d %H:%M:%S} UTC",
            text=(
                "This is a test message sent by `manage.py send_test_mail`.\n"
                "It went through the API's accept path, RabbitMQ and a Celery worker.\n"
            ),
            priority=priority,
            tags=["send_test_mail"],
        )
        try:
            message = message_accept(client=client_get_or_create(name=client), draft=draft)
        except SenderDomainNotVerified as refused:
            raise CommandError(
                f"{refused.message} (manage.py domains add {client} {refused.extra['domain']})"
            ) from None
        self.stdout.write(
            f"Accepted message {message.id} for {to} ({priority}); waiting up to {timeout:g} s."
        )
        started = time.monotonic()
        status = message.status
        while status not in FINISHED_MESSAGE_STATUSES and time.monotonic() - started < timeout:
            time.sleep(0.2)
            status = Message.objects.filter(id=message.id).values_list("status", flat=True)[0]
        took = time.monotonic() - started
        for attempt in Attempt.objects.filter(delivery__message_id=message.id).order_by("number"):
            reply = f"{attempt.smtp_code or 'no reply'} {attempt.reply}".strip()
            self.stdout.write(
                f"  attempt {attempt.number} by {attempt.worker}: {attempt.outcome}: {reply}"
            )
        if status == MessageStatus.DELIVERED:
            self.stdout.write(f"Delivered in {took:.1f} s.")
            return
        delivery = Delivery.objects.get(message_id=message.id)
        if status in FINISHED_MESSAGE_STATUSES:
            raise CommandError(
                f"Not delivered: {status}: {delivery.last_reply}", returncode=EXIT_PARTIAL
            )
        raise CommandError(
            f"No outcome within {timeout:g} s: the delivery is {delivery.status}"
            f"{': ' + delivery.last_reply if delivery.last_reply else ''}. "
            f"It stays in the queue; follow it with `manage.py mailq` or the admin.",
            returncode=EXIT_TIMEOUT,
        )
