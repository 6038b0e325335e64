"""Webhook endpoints, the events each one is owed, and the log of every request made to it.

The ``Event`` table (``deliveries.models``) is the outbox: events are written in the transaction
of the change they report. The fan-out turns each event into one ``Notification`` per endpoint
that wants it; a delivery task then POSTs an endpoint's pending notifications in order, in
batches, and records each POST as a ``WebhookAttempt``.
"""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from deliveries.models import Event

EVENT_TYPES = [value for value, _ in Event.Type.choices]


def all_event_types() -> list[str]:
    return list(EVENT_TYPES)


#: What the workers record about an endpoint's health; read-only in the API and the admin.
HEALTH_FIELDS = (
    "consecutive_failures",
    "failing_since",
    "retry_at",
    "last_success_at",
    "last_failure_at",
    "last_error",
)
DISABLED_FIELDS = ("disabled_at", "disabled_reason")


class Endpoint(models.Model):
    """A URL of a client's that receives its events, signed with the endpoint's secret."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey("accounts.Client", on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=2000)
    event_types = ArrayField(
        models.CharField(max_length=12, choices=Event.Type.choices), default=all_event_types
    )
    description = models.CharField(max_length=200, blank=True)
    # Stored in clear because every request is signed with it (an HMAC key cannot be hashed
    # away like a password). Shown once when created; never logged, never shown again.
    secret = models.CharField(max_length=100, editable=False)
    enabled = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Health: reset by every successful POST.
    consecutive_failures = models.PositiveIntegerField(default=0)
    failing_since = models.DateTimeField(
        null=True, blank=True, help_text="First failure of the current run of failures."
    )
    retry_at = models.DateTimeField(
        null=True, blank=True, help_text="While failing: no request before this time."
    )
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)

    # Whoever holds `claim` (a delivery task) is the only one sending to this endpoint until
    # `claimed_until`: one request in flight per endpoint keeps the events in order and keeps a
    # slow endpoint to one worker. A claim outliving its task (worker died) simply expires.
    claim = models.UUIDField(null=True, blank=True, editable=False)
    claimed_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "webhook endpoint"
        indexes = [models.Index(fields=["client", "created_at"], name="endpoint_client_created")]

    def __str__(self) -> str:
        return self.url


class Notification(models.Model):
    """One event owed to one endpoint."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        DELIVERED = "delivered", "delivered"
        ABANDONED = "abandoned", "abandoned"  # past the retry horizon

    id = models.BigAutoField(primary_key=True)
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="notifications")
    # No constraint in the database: the event table is partitioned by time, so one could only
    # reference (id, created_at) and would make every removal of a day's events check this
    # table. Retention deletes an event's notifications before the event (webhooks 0004).
    event = models.ForeignKey(
        Event, on_delete=models.CASCADE, related_name="notifications", db_constraint=False
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="POSTs that carried this event")
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event"], name="notification_unique")
        ]
        indexes = [
            # "The next pending events of this endpoint, in order": delivered rows (nearly all of
            # them) stay out of the index the delivery task and the tick read.
            models.Index(
                fields=["endpoint", "id"],
                name="notification_pending",
                condition=Q(status="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One POST to an endpoint: what it carried and what came back (a short excerpt only)."""

    id = models.BigAutoField(primary_key=True)
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="attempts")
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    event_ids = ArrayField(models.UUIDField(), default=list)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    succeeded = models.BooleanField()
    error = models.CharField(max_length=300, blank=True)
    response_excerpt = models.CharField(max_length=200, blank=True)
    task_id = models.CharField(max_length=64, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["endpoint", "-started_at"], name="webhook_attempt_recent"),
        ]

    def __str__(self) -> str:
        outcome = self.status_code or self.error or "no reply"
        return f"{self.endpoint_id} at {self.started_at:%Y-%m-%d %H:%M:%S}: {outcome}"

    @property
    def event_count(self) -> int:
        return len(self.event_ids)
