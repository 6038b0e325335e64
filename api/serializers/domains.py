"""Sending domains in the API: what a client sends to add one, and what it is shown."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.serializers.fields import CharField, StrictSerializer
from domains import conf
from domains.models import DKIM_KEY_PUBLIC_FIELDS, DkimKey, SendingDomain
from domains.names import DomainNameInvalid, domain_normalise
from domains.selectors import domain_records, domain_usable


class DomainCreateSerializer(StrictSerializer):
    domain = CharField(
        max_length=1024,
        help_text="The domain mail will come From: (e.g. `shop.example`); an internationalised "
        "name is stored as its A-label (`xn--...`).",
    )
    allow_subdomains = serializers.BooleanField(
        default=False, help_text="Mail may also come From: addresses of its subdomains."
    )
    algorithm = serializers.ChoiceField(
        choices=DkimKey.Algorithm.choices,
        default=DkimKey.Algorithm.RSA_SHA256,
        help_text="The DKIM key's algorithm: rsa-sha256 (2048-bit, understood everywhere) or "
        "ed25519-sha256 (RFC 8463; not every receiver checks it).",
    )

    def validate_domain(self, value: str) -> str:
        try:
            return domain_normalise(value)
        except DomainNameInvalid as exc:
            raise serializers.ValidationError(exc.message, code=exc.code) from None


class RotateKeySerializer(StrictSerializer):
    algorithm = serializers.ChoiceField(
        choices=DkimKey.Algorithm.choices,
        required=False,
        help_text="The new key's algorithm; by default the active key's.",
    )


class ActivateKeySerializer(StrictSerializer):
    selector = CharField(max_length=63, help_text="The pending key to make the signing one.")


class DkimKeySerializer(serializers.ModelSerializer):
    record_name = serializers.CharField(read_only=True, help_text="Where its TXT record goes.")
    record_value = serializers.CharField(read_only=True, help_text="The TXT record's text.")

    class Meta:
        model = DkimKey
        fields = read_only_fields = list(DKIM_KEY_PUBLIC_FIELDS)  # never the private key


class DomainRecordSerializer(serializers.Serializer):
    purpose = serializers.ChoiceField(choices=["dkim", "spf", "dmarc", "bounce"])
    type = serializers.ChoiceField(choices=["TXT", "MX"])
    name = serializers.CharField()
    value = serializers.CharField(
        help_text="What to publish; empty when the operator has not said (bounce MX host)."
    )
    # DRF's metaclass takes declared fields off the class; the stubs see Field.required.
    required = serializers.BooleanField(  # type: ignore[assignment]
        help_text="Needed for the domain to be verified."
    )
    publisher = serializers.ChoiceField(choices=["client", "operator"])
    selector = serializers.CharField(help_text="The DKIM key's selector; empty for others.")
    note = serializers.CharField()


class DomainCheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField(
        allow_null=True,
        help_text="True found and right, false missing or wrong, null: DNS could not be asked.",
    )
    detail = serializers.CharField()
    # DRF's metaclass takes declared fields off the class; the stubs see Field.required.
    required = serializers.BooleanField()  # type: ignore[assignment]
    found = serializers.ListField(child=serializers.CharField())
    policy = serializers.CharField(help_text="DMARC only: the p= tag.")


class DomainSerializer(serializers.ModelSerializer):
    usable = serializers.SerializerMethodField(
        help_text="Whether mail may come From: it now (verified, or failing within the grace "
        "period)."
    )
    suspends_at = serializers.SerializerMethodField(
        help_text="When a failing domain is suspended unless its records are found again."
    )
    dkim_keys = DkimKeySerializer(many=True, read_only=True)
    records = serializers.SerializerMethodField(help_text="The DNS records to publish.")
    checks = serializers.SerializerMethodField(
        help_text="What the last check found, by record: `dkim:<selector>`, `spf`, `dmarc`, "
        "`bounce`."
    )

    class Meta:
        model = SendingDomain
        fields = [
            "id",
            "domain",
            "allow_subdomains",
            "state",
            "usable",
            "verified_locally",
            "verified_at",
            "last_checked_at",
            "failing_since",
            "suspends_at",
            "created_at",
            "dkim_keys",
            "records",
            "checks",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_usable(self, domain: SendingDomain) -> bool:
        return domain_usable(
            state=domain.state, failing_since=domain.failing_since, now=timezone.now()
        )

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_suspends_at(self, domain: SendingDomain) -> Any:
        if domain.state != SendingDomain.State.FAILING or domain.failing_since is None:
            return None
        return serializers.DateTimeField().to_representation(domain.failing_since + conf.grace())

    @extend_schema_field(DomainRecordSerializer(many=True))
    def get_records(self, domain: SendingDomain) -> list[dict[str, Any]]:
        return [record.as_dict() for record in domain_records(domain=domain)]

    @extend_schema_field(serializers.DictField(child=DomainCheckSerializer()))
    def get_checks(self, domain: SendingDomain) -> dict[str, Any]:
        return dict(domain.checks)


class DomainListSerializer(serializers.Serializer):
    results = DomainSerializer(many=True)
