"""Validation of what clients send, and the shape of what they get back.

Everything that reaches a header is checked here for CR/LF (header injection) before any row is
written; ``email.policy.SMTP`` refuses them again when the MIME is built.
"""

from __future__ import annotations

import re
from email.utils import formataddr, getaddresses

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from rest_framework import serializers

from deliveries.models import Attempt, Delivery, Message, Priority
from deliveries.services import MessageDraft, Recipient

_LINE_BREAK = re.compile(r"[\r\n\x00]")
# RFC 5322 field name: printable US-ASCII except colon.
_HEADER_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]{1,76}$")
# Headers Mailhub writes itself; a custom header may not replace or repeat them.
RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "sender",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "return-path",
        "received",
        "dkim-signature",
    }
)


def _no_line_breaks(value: str) -> str:
    if _LINE_BREAK.search(value):
        raise serializers.ValidationError(
            "Line breaks and NUL characters are not allowed here.", code="line_break"
        )
    return value


class AddressField(serializers.CharField):
    """``addr@example.com`` or ``Display Name <addr@example.com>``; yields a Recipient."""

    default_error_messages = {
        "invalid_address": "Enter a valid email address, e.g. 'Ann <ann@example.com>'.",
        "non_ascii": "Only ASCII addresses are supported (the domain may be written in punycode).",
    }

    def to_internal_value(self, data) -> Recipient:
        text = _no_line_breaks(super().to_internal_value(data))
        if len(text) > 320:
            raise serializers.ValidationError(
                "An address is at most 320 characters.", code="max_length"
            )
        parsed = getaddresses([text])
        if len(parsed) != 1:
            self.fail("invalid_address")
        name, address = parsed[0]
        if not address or "@" not in address:
            self.fail("invalid_address")
        if not address.isascii():
            self.fail("non_ascii")
        try:
            validate_email(address)
        except DjangoValidationError:
            self.fail("invalid_address")
        if len(name) > 200:
            raise serializers.ValidationError("The display name is too long.", code="max_length")
        return Recipient(address=address, name=name)


class HeadersField(serializers.DictField):
    child = serializers.CharField(max_length=998, allow_blank=True, trim_whitespace=False)

    def to_internal_value(self, data) -> dict[str, str]:
        headers = super().to_internal_value(data)
        if len(headers) > settings.MAILHUB_MAX_HEADERS:
            raise serializers.ValidationError(
                f"At most {settings.MAILHUB_MAX_HEADERS} custom headers.", code="max_length"
            )
        errors = {}
        seen = set()
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                errors[name] = "Not a valid header name (printable ASCII, no colon, ≤ 76)."
            elif name.lower() in RESERVED_HEADERS:
                errors[name] = "Mailhub sets this header itself; use the message field instead."
            elif name.lower() in seen:
                errors[name] = "Header given twice (names are case-insensitive)."
            elif _LINE_BREAK.search(value):
                errors[name] = "Line breaks and NUL characters are not allowed in header values."
            seen.add(name.lower())
        if errors:
            raise serializers.ValidationError(errors, code="invalid_header")
        return headers


class BodyField(serializers.CharField):
    def __init__(self, **kwargs):
        super().__init__(allow_blank=True, trim_whitespace=False, required=False, **kwargs)

    def to_internal_value(self, data) -> str:
        value = super().to_internal_value(data)
        limit = settings.MAILHUB_MAX_BODY_BYTES
        if len(value.encode("utf-8", "surrogatepass")) > limit:
            raise serializers.ValidationError(
                f"The body is larger than {limit} bytes (UTF-8).", code="max_size"
            )
        return value


class MessageCreateSerializer(serializers.Serializer):
    # `from` is a Python keyword: declared as `sender`, exposed as `from` by get_fields().
    sender = AddressField(help_text="From: 'addr@example.com' or 'Name <addr@example.com>'")
    to = serializers.ListField(child=AddressField(), required=False, default=list)
    cc = serializers.ListField(child=AddressField(), required=False, default=list)
    bcc = serializers.ListField(child=AddressField(), required=False, default=list)
    reply_to = serializers.ListField(child=AddressField(), required=False, default=list)
    subject = serializers.CharField(
        max_length=998,
        allow_blank=True,
        required=False,
        default="",
        trim_whitespace=False,
        validators=[_no_line_breaks],
    )
    text = BodyField()
    html = BodyField()
    headers = HeadersField(required=False, default=dict)
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("sender")
        return fields

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {
                        name: [serializers.ErrorDetail("Unknown field.", code="unknown_field")]
                        for name in unknown
                    }
                )
        return super().to_internal_value(data)

    def validate(self, attrs):
        count = len(attrs["to"]) + len(attrs["cc"]) + len(attrs["bcc"])
        if count == 0:
            raise serializers.ValidationError(
                {"to": ["At least one recipient (to, cc or bcc) is required."]}, code="required"
            )
        if count > settings.MAILHUB_MAX_RECIPIENTS:
            raise serializers.ValidationError(
                {
                    "to": [
                        f"At most {settings.MAILHUB_MAX_RECIPIENTS} recipients per message "
                        f"(to, cc and bcc together); {count} given."
                    ]
                },
                code="max_length",
            )
        if not attrs.get("text") and not attrs.get("html"):
            raise serializers.ValidationError(
                {"text": ["Give a text or an html body (or both)."]}, code="required"
            )
        return attrs

    def to_draft(self) -> MessageDraft:
        """The validated message, as ``deliveries.services.message_accept`` takes it."""
        data = self.validated_data
        sender: Recipient = data["from"]
        recipients = [
            Recipient(address=r.address, name=r.name, kind=kind)
            for kind in (Delivery.Kind.TO, Delivery.Kind.CC, Delivery.Kind.BCC)
            for r in data[kind.value]
        ]
        return MessageDraft(
            sender=formataddr((sender.name, sender.address)),
            recipients=recipients,
            reply_to=[r.address for r in data["reply_to"]],
            subject=data["subject"],
            text=data.get("text", ""),
            html=data.get("html", ""),
            headers=data["headers"],
            priority=data["priority"],
        )


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = Attempt
        fields = [
            "number",
            "started_at",
            "duration_ms",
            "smtp_code",
            "enhanced_code",
            "reply",
            "outcome",
            "worker",
        ]


class DeliverySerializer(serializers.ModelSerializer):
    attempts = AttemptSerializer(source="attempt_set", many=True, read_only=True)
    attempt_count = serializers.IntegerField(source="attempts", read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "address",
            "name",
            "kind",
            "status",
            "attempt_count",
            "next_attempt_at",
            "last_code",
            "last_enhanced_code",
            "last_reply",
            "delivered_at",
            "attempts",
        ]


class MessageDetailSerializer(serializers.ModelSerializer):
    recipients = DeliverySerializer(source="deliveries", many=True, read_only=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "status",
            "priority",
            "sender",
            "reply_to",
            "subject",
            "text_body",
            "html_body",
            "headers",
            "message_id",
            "created_at",
            "expires_at",
            "recipients",
        ]
