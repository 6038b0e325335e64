"""A client's sending domains and their DKIM keys.

A client may send only from addresses of its verified domains; each domain has DKIM keys whose
public halves are published in DNS and whose private halves sign the mail sent from it. The
private half is stored encrypted (``domains.keys``); nothing here ever shows it.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from domains.records import dkim_value


class SendingDomain(models.Model):
    """A domain a client sends from, and what the last check of its DNS records found."""

    class State(models.TextChoices):
        PENDING = "pending", "pending"  # created; its records were never all found
        VERIFIED = "verified", "verified"  # its records were found at the last check
        # Was verified; its records were missing at the checks since `failing_since`. Still
        # usable until the grace period after that ends.
        FAILING = "failing", "failing"
        SUSPENDED = "suspended", "suspended"  # the grace period ended: not usable until verified

    client = models.ForeignKey(
        "accounts.Client", on_delete=models.CASCADE, related_name="sending_domains"
    )
    domain = models.CharField(max_length=253, help_text="Lower-case, IDNA (A-label) form")
    allow_subdomains = models.BooleanField(
        default=False, help_text="Mail may also come From: addresses of its subdomains"
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    verified_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    # Marked verified by an operator (`manage.py domains add --verified-locally`), for a stack
    # without public DNS (./scripts/start's demo): usable, and left out of the periodic checks.
    verified_locally = models.BooleanField(default=False)
    # What the last check found, record by record (name -> {"ok": bool, "detail": str, ...}).
    checks = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "domain"], name="sending_domain_unique")
        ]

    def __str__(self) -> str:
        return f"{self.domain} ({self.state})"


#: What may be shown of a DKIM key (the API, the admin): everything but its private half.
DKIM_KEY_PUBLIC_FIELDS = (
    "selector",
    "algorithm",
    "state",
    "record_name",
    "record_value",
    "created_at",
    "activated_at",
    "retired_at",
)


class DkimKey(models.Model):
    """One DKIM key pair of a sending domain, published under its selector.

    Rotation: a new key is made `pending` and its record published; once DNS has it, it is made
    `active` (the one that signs; at most one per domain) and the old one `retired`, whose record
    may be removed once mail signed with it has been delivered.
    """

    class State(models.TextChoices):
        PENDING = "pending", "pending"  # generated: publish its record, then activate it
        ACTIVE = "active", "active"  # signs the domain's mail
        RETIRED = "retired", "retired"  # signs nothing any more

    class Algorithm(models.TextChoices):
        RSA_SHA256 = "rsa-sha256", "rsa-sha256 (2048-bit RSA)"
        ED25519_SHA256 = "ed25519-sha256", "ed25519-sha256 (RFC 8463)"

    domain = models.ForeignKey(SendingDomain, on_delete=models.CASCADE, related_name="dkim_keys")
    selector = models.CharField(max_length=63, help_text="The DNS label before ._domainkey")
    algorithm = models.CharField(
        max_length=16, choices=Algorithm.choices, default=Algorithm.RSA_SHA256
    )
    # The p= value of the DKIM record: base64 of the DER public key (RSA), or of the 32 raw
    # bytes of the public key (Ed25519, RFC 8463).
    public_key = models.TextField()
    # The PKCS#8 PEM private key, encrypted with MAILHUB_DKIM_ENCRYPTION_KEYS (domains.keys).
    private_key_encrypted = models.BinaryField()
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["domain", "selector"], name="dkim_key_selector_unique"),
            models.UniqueConstraint(
                fields=["domain"], condition=Q(state="active"), name="dkim_key_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.selector}._domainkey ({self.algorithm}, {self.state})"

    def __repr__(self) -> str:  # the default shows fields; never the (encrypted) private key
        return f"<DkimKey {self.pk} {self.selector} {self.state}>"

    @property
    def record_name(self) -> str:
        """Where the public key is published: ``<selector>._domainkey.<domain>``."""
        return f"{self.selector}._domainkey.{self.domain.domain}"

    @property
    def record_value(self) -> str:
        """The TXT record to publish there."""
        return dkim_value(algorithm=self.algorithm, public_key=self.public_key)
