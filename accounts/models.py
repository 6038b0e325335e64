"""The tenant side: clients, their API keys, the keys' rate counters and idempotency records.

The models came from the ``api`` app and kept their tables (``db_table``): migrations run while
the previous release still serves (``deploy/README.md``), and a renamed table would fail every
request of those processes until they are replaced. ``accounts.0001`` adopted the tables without
touching them.
"""

from __future__ import annotations

from django.db import models


class Client(models.Model):
    """An application that sends mail through Mailhub; it owns its messages and API keys."""

    name = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # True while the client may have an enabled webhook endpoint; kept so by ``webhooks.services``
    # in the transaction that creates, enables, disables or deletes one. The engine writes the
    # events of a client without one already fanned out: nobody would be told of them, and the
    # fan-out's later update of each event row is the largest cost it can skip. Wrong only ever
    # on the safe side (True with no endpoint left: the fan-out does what it always did).
    wants_events = models.BooleanField(
        default=False,
        db_default=False,
        editable=False,
        help_text="Has a webhook endpoint that may want its events (kept by webhooks).",
    )

    class Meta:
        db_table = "api_client"

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """A secret that authenticates a client. Only its SHA-256 is stored.

    A plain hash (no salt, no stretching) is enough because the secret is 32 random bytes, not a
    password a person chose: nothing can be guessed, and the lookup stays one indexed query.

    A key in test mode (``test_mode``, its secret starting ``mh_test_``) has its mail accepted,
    stored and recorded like any other, but settled by the simulator instead of being sent
    (``deliveries.simulator``); the API lists a key's own mode's mail unless asked otherwise.
    """

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, help_text="The visible start of the key.")
    # Defaults in the database too: the previous release, serving while migrations run, inserts
    # keys without this column.
    test_mode = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Its mail is settled by the simulator, never sent. Chosen when created.",
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Requests per minute; empty: MAILHUB_API_RATE_LIMIT_PER_MINUTE.",
    )

    class Meta:
        db_table = "api_apikey"
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.client})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class RateCounter(models.Model):
    """An API key's request counts for the rate limit: this minute's and the one before.

    One row per key, updated by a single ``INSERT ... ON CONFLICT DO UPDATE`` per request
    (``accounts.rate_limit``), so every API process and machine counts together.
    """

    api_key = models.OneToOneField(ApiKey, on_delete=models.CASCADE, primary_key=True)
    window_index = models.BigIntegerField(help_text="Which one-minute window `count` is of.")
    count = models.PositiveIntegerField(help_text="Requests allowed in that window.")
    previous = models.PositiveIntegerField(help_text="Requests allowed in the window before.")

    class Meta:
        db_table = "api_ratecounter"

    def __str__(self) -> str:
        return f"{self.api_key_id}: {self.count} in window {self.window_index}"


class IdempotencyRecord(models.Model):
    """The answer given to a request sent with an ``Idempotency-Key`` header, kept for replays.

    The row is inserted in the same transaction as whatever the request creates, before it is
    created. A concurrent request with the same key blocks on the unique index until that
    transaction ends, then finds the row and replays its answer: one key, one effect.
    """

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="+")
    # A test-mode key's records are apart from the live keys': a key string used while testing
    # an integration must never replay its test answer to the same request sent live.
    test_mode = models.BooleanField(default=False, db_default=False)
    key = models.CharField(max_length=255)
    # SHA-256 of method, path and the canonical JSON body: the same key with another request is
    # refused instead of answered with an unrelated stored response.
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    response_headers = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True, help_text="May be purged after this.")

    class Meta:
        db_table = "api_idempotencyrecord"
        constraints = [
            models.UniqueConstraint(
                fields=["client", "test_mode", "key"], name="idempotency_unique_mode_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.client_id})"
