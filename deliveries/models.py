from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper

from deliveries.states import ACTIVE, AttemptOutcome, DeliveryStatus, EventType, MessageStatus


class Priority(models.TextChoices):
    HIGH = "high", "high"
    NORMAL = "normal", "normal"
    LOW = "low", "low"


class Message(models.Model):
    """One accepted mail: what to send, for whom (its deliveries), and its rolled-up status."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: `message_client_created` starts with it (one index less per insert).
    client = models.ForeignKey(
        "accounts.Client", on_delete=models.PROTECT, related_name="messages", db_index=False
    )
    sender = models.CharField(max_length=998, help_text="From: header, e.g. 'Shop <no@shop.test>'")
    reply_to = models.JSONField(default=list, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    text_body = models.TextField(blank=True)
    html_body = models.TextField(blank=True)
    headers = models.JSONField(default=dict, blank=True, help_text="Custom headers, name: value")
    priority = models.CharField(max_length=6, choices=Priority.choices, default=Priority.NORMAL)
    status = models.CharField(
        max_length=20, choices=MessageStatus.choices, default=MessageStatus.QUEUED
    )
    tags = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    template_name = models.CharField(max_length=100, blank=True, help_text="Rendered from")
    # One Message-ID for every attempt, so a duplicate delivery is recognisable as one.
    message_id = models.CharField(max_length=255, help_text="The RFC 5322 Message-ID header")
    created_at = models.DateTimeField(db_index=True)
    send_at = models.DateTimeField(null=True, blank=True, help_text="Held until then")
    expires_at = models.DateTimeField(help_text="Deliveries still waiting then are failed.")
    # Accepted with a test-mode key: stored, rendered and recorded like live mail, but settled by
    # the simulator, never handed to a relay (``services.sending``). Defaults in the database
    # too: the previous release, serving while migrations run, writes rows without it.
    test_mode = models.BooleanField(default=False, db_default=False)
    # One-click unsubscribe links (RFC 8058) in each recipient's copy: on, off, or (null) on for
    # `low` priority only (``parcels.wants_unsubscribe``).
    unsubscribe = models.BooleanField(null=True, blank=True, default=None)

    class Meta:
        indexes = [
            models.Index(fields=["client", "-created_at"], name="message_client_created"),
            # A test-mode key lists test mail, few rows among a client's many live ones: this
            # small index finds them without reading the live ones. Live and `all` lists read
            # `message_client_created`, where nearly every row matches.
            models.Index(
                fields=["client", "-created_at"],
                name="message_client_test_created",
                condition=Q(test_mode=True),
            ),
            GinIndex(fields=["tags"], name="message_tags"),
            # The API filters a client's messages by metadata containment.
            GinIndex(fields=["metadata"], name="message_metadata", opclasses=["jsonb_path_ops"]),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.subject[:40]!r}"


class Delivery(models.Model):
    """One recipient of one message, and where its delivery stands."""

    class Kind(models.TextChoices):
        TO = "to", "To"
        CC = "cc", "Cc"
        BCC = "bcc", "Bcc"

    Status = DeliveryStatus

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="deliveries")
    address = models.CharField(max_length=254, help_text="The envelope recipient")
    # Lower-cased domain of the address: per-destination limits count by it.
    domain = models.CharField(max_length=255, blank=True)
    name = models.CharField(max_length=200, blank=True, help_text="Display name for headers")
    kind = models.CharField(max_length=3, choices=Kind.choices, default=Kind.TO)
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices)
    attempts = models.PositiveIntegerField(default=0)
    # Attempts that failed because no relay could be reached; they do not count towards
    # MAILHUB_MAX_ATTEMPTS (see policy.decide).
    relay_failures = models.PositiveIntegerField(default=0)
    # Attempts whose worker died, or whose task failed, before it reported: past
    # MAILHUB_QUARANTINE_AFTER_LOST_ATTEMPTS the delivery is failed (see policy.decide_lost).
    # Defaults in the database too: rows are also written by raw SQL and COPY.
    lost_attempts = models.PositiveIntegerField(default=0, db_default=0)
    # A client cancelled the message while this delivery was being sent: the attempt goes on,
    # and if it ends in a retry (deferred, or lost) the delivery is cancelled instead.
    cancel_requested = models.BooleanField(default=False, db_default=False)
    # While queued: when to publish again if no worker took it. While sending: when the lease
    # ends. While deferred or scheduled: when it is due. Null once final.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_enhanced_code = models.CharField(max_length=16, blank=True)
    last_reply = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # The relay's id of the message, from its 250 reply to DATA (``deliveries.relay_ids``): what
    # an ESP's tracking events name it by. Shared by the recipients of one SMTP transaction.
    # Defaults in the database too: rows are also written by raw SQL and COPY.
    relay_message_id = models.CharField(max_length=128, blank=True, default="", db_default="")
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "deliveries"
        indexes = [
            # The dispatcher asks "which active rows are due?" every few seconds. A partial index
            # holds only active rows, so finished mail (nearly all rows) is never read by it.
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_due",
                condition=Q(status__in=sorted(ACTIVE)),
            ),
            # Recipient search (admin, commands) is case-insensitive.
            models.Index(Upper("address"), name="delivery_address_upper"),
            # Per-destination concurrency: how many deliveries to a domain are being sent now.
            models.Index(
                fields=["domain"],
                name="delivery_sending_domain",
                condition=Q(status=DeliveryStatus.SENDING),
            ),
            # An ESP's event names the relay's id: partial, so rows without one (test mail,
            # relays that give none, every delivery not yet delivered) cost the index nothing.
            models.Index(
                fields=["relay_message_id"],
                name="delivery_relay_message_id",
                condition=~Q(relay_message_id=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.address} ({self.status})"


class Attempt(models.Model):
    """One try at delivering to one recipient, written before SMTP is spoken.

    Partitioned by day on ``started_at`` (``deliveries.partitions``): the database's primary key
    is (id, started_at); Django knows ``id``, unique by construction (a sequence). A query that
    knows when the attempt started says so, and reads one day's partition instead of all.
    """

    Outcome = AttemptOutcome

    # No index of its own: `attempt_delivery_number` starts with it. No constraint in the
    # database: see Event.
    delivery = models.ForeignKey(
        Delivery,
        on_delete=models.CASCADE,
        related_name="attempt_set",
        db_index=False,
        db_constraint=False,
    )
    number = models.PositiveIntegerField()
    task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    relay = models.CharField(max_length=255, blank=True, help_text="The relay it was sent to")
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    enhanced_code = models.CharField(max_length=16, blank=True)
    reply = models.TextField(blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING)

    class Meta:
        # Not unique: a unique index on a partitioned table must hold the partition key. The
        # claim numbers a delivery's attempts under its row lock, so no two share a number.
        indexes = [models.Index(fields=["delivery", "number"], name="attempt_delivery_number")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {self.outcome}"


class Attachment(models.Model):
    """A file sent with a message; with a ``content_id`` it is an inline part the HTML can show."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=127)
    content = models.BinaryField()
    content_id = models.CharField(max_length=255, blank=True)
    size = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.filename} ({self.size} bytes)"


class Suppression(models.Model):
    """An address a client's mail is never sent to (hard bounce, complaint, or by hand)."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", "hard bounce"
        MANUAL = "manual", "added by hand"
        COMPLAINT = "complaint", "complaint"
        UNSUBSCRIBE = "unsubscribe", "unsubscribed"

    client = models.ForeignKey(
        "accounts.Client", on_delete=models.CASCADE, related_name="suppressions"
    )
    address = models.CharField(max_length=254, help_text="Stored lower-cased")
    reason = models.CharField(max_length=20, choices=Reason.choices, default=Reason.MANUAL)
    detail = models.TextField(blank=True, help_text="e.g. the SMTP reply that bounced")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "address"], name="suppression_unique")
        ]

    def __str__(self) -> str:
        return f"{self.address} ({self.reason})"


class Template(models.Model):
    """Subject, text and HTML in Django template syntax, rendered at accept time."""

    client = models.ForeignKey(
        "accounts.Client", on_delete=models.CASCADE, related_name="templates"
    )
    name = models.SlugField(max_length=100)
    subject = models.TextField(blank=True)
    text = models.TextField(blank=True)
    html = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client", "name"], name="template_unique")]

    def __str__(self) -> str:
        return self.name


class Event(models.Model):
    """One change of a delivery's fate, written in the transaction that made the change.

    Partitioned by day on ``created_at`` (``deliveries.partitions``): the database's primary key
    is (id, created_at); Django knows ``id``, unique by construction (uuid4). A query that knows
    how old the events can be says so, and reads only the partitions of those days.
    """

    Type = EventType

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # History refers to its rows without foreign-key constraints in the database (as the
    # notifications refer to events): it is written only by Mailhub's own statements, in the
    # transaction that wrote or locked the rows it names, and removed before them (retention
    # deletes children first; Django's cascade still runs). Each constraint cost a check per row,
    # a lookup that took a share lock on the client's, message's or delivery's row: four per
    # delivered message, ~6 % of Postgres's time in the benchmark (issue 15).
    # No index of its own: `event_client_created` starts with it (one index less per insert).
    client = models.ForeignKey(
        "accounts.Client",
        on_delete=models.CASCADE,
        related_name="events",
        db_index=False,
        db_constraint=False,
    )
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="events", db_constraint=False
    )
    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, related_name="events", db_constraint=False
    )
    type = models.CharField(max_length=12, choices=Type.choices)
    recipient = models.CharField(max_length=254)
    attempt = models.PositiveIntegerField(default=0)
    smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    enhanced_code = models.CharField(max_length=16, blank=True)
    reply = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    # Set once the webhook fan-out has handed the event to every endpoint that wants it, or when
    # written, for a client with no endpoint (`Client.wants_events`). A flag, not a high-water
    # mark: ids and times are not in commit order, a flag misses nothing.
    fanned_out = models.BooleanField(default=False)
    # Its message's `test_mode`, copied when the event is written, so that the event log lists a
    # mode's events through an index of its own (as `message_client_test_created` does).
    test_mode = models.BooleanField(default=False, db_default=False)

    class Meta:
        indexes = [
            models.Index(fields=["client", "created_at"], name="event_client_created"),
            models.Index(
                fields=["client", "created_at"],
                name="event_client_test_created",
                condition=Q(test_mode=True),
            ),
            # The admin's event list and /metrics read events by time across clients.
            models.Index(fields=["created_at"], name="event_created"),
            models.Index(
                fields=["created_at"], name="event_fanout_due", condition=Q(fanned_out=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.recipient}"


class DomainWindow(models.Model):
    """Attempts started towards one domain in one minute, for per-destination rate limits."""

    domain = models.CharField(max_length=255)
    minute = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["domain", "minute"], name="domain_window_unique")
        ]

    def __str__(self) -> str:
        return f"{self.domain} {self.minute:%H:%M}: {self.count}"
