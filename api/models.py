from __future__ import annotations

from django.db import models


class Client(models.Model):
    """An application that sends mail through Mailhub; it owns its messages and API keys."""

    name = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """A secret that authenticates a client. Only its SHA-256 is stored.

    A plain hash (no salt, no stretching) is enough because the secret is 32 random bytes, not a
    password a person chose: nothing can be guessed, and the lookup stays one indexed query.
    """

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, help_text="The visible start of the key.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.client})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
