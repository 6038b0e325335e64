"""What clients get back: the shapes of the API's answers (and of its schema)."""

from __future__ import annotations

from rest_framework import serializers

from deliveries.models import Attachment, Attempt, Delivery, Event, Message, Suppression
from deliveries.states import DeliveryStatus, MessageStatus

_TEST_MODE = (
    "Accepted with a test-mode key: stored and recorded like live mail, settled by the "
    "simulator, never sent."
)


class BatchItemResultSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the message in the request.")
    id = serializers.UUIDField(required=False, help_text="Set when the message was accepted.")
    status = serializers.ChoiceField(choices=MessageStatus.choices, required=False)
    test_mode = serializers.BooleanField(required=False, help_text=_TEST_MODE)
    error = serializers.DictField(
        required=False,
        help_text="Set when the message was refused: a problem (`validation_error`) with "
        "its field errors; nothing was stored for it.",
    )


class BatchResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = BatchItemResultSerializer(many=True, help_text="One per message, in order.")


class MessageAcceptedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=MessageStatus.choices)
    test_mode = serializers.BooleanField(help_text=_TEST_MODE)


class CancelResultSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=MessageStatus.choices, help_text="After the cancel.")
    cancelled = serializers.ListField(
        child=serializers.CharField(),
        help_text="The recipients whose delivery this request cancelled; empty when nothing "
        "was left to cancel (sent, being sent, or already final).",
    )
    cancel_requested = serializers.ListField(
        child=serializers.CharField(),
        help_text="The recipients being sent at this moment: if this attempt delivers, bounces "
        "or fails them, that stands; if it would be retried, they become `cancelled` instead.",
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
    status = serializers.ChoiceField(choices=DeliveryStatus.choices, read_only=True)

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


class RecipientSummarySerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=DeliveryStatus.choices, read_only=True)

    class Meta:
        model = Delivery
        fields = ["address", "kind", "status"]


class AttachmentInfoSerializer(serializers.ModelSerializer):
    class Meta:
        model = Attachment
        fields = ["filename", "content_type", "size", "content_id"]


class MessageSummarySerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=MessageStatus.choices, read_only=True)
    test_mode = serializers.BooleanField(read_only=True, help_text=_TEST_MODE)
    recipients = RecipientSummarySerializer(source="deliveries", many=True, read_only=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "status",
            "test_mode",
            "priority",
            "sender",
            "subject",
            "tags",
            "metadata",
            "template_name",
            "created_at",
            "send_at",
            "recipients",
        ]


class MessageDetailSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=MessageStatus.choices, read_only=True)
    test_mode = serializers.BooleanField(read_only=True, help_text=_TEST_MODE)
    recipients = DeliverySerializer(source="deliveries", many=True, read_only=True)
    attachments = AttachmentInfoSerializer(many=True, read_only=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "status",
            "test_mode",
            "priority",
            "sender",
            "reply_to",
            "subject",
            "text_body",
            "html_body",
            "headers",
            "tags",
            "metadata",
            "template_name",
            "message_id",
            "created_at",
            "send_at",
            "expires_at",
            "attachments",
            "recipients",
        ]


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = [
            "id",
            "type",
            "recipient",
            "attempt",
            "smtp_code",
            "enhanced_code",
            "reply",
            "next_attempt_at",
            "created_at",
            "test_mode",
        ]


class EventListSerializer(serializers.Serializer):
    results = EventSerializer(many=True)


class SuppressionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Suppression
        fields = ["address", "reason", "detail", "created_at"]
