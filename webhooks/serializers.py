"""The event document (the same in ``GET /api/v1/events`` and in every webhook body) and the
webhook endpoint's input and output shapes."""

from __future__ import annotations

from rest_framework import serializers

from api.serializers.filters import ModeField, test_mode_for
from deliveries.models import Event
from webhooks import conf
from webhooks.models import (
    DISABLED_FIELDS,
    EVENT_TYPES,
    HEALTH_FIELDS,
    Endpoint,
    WebhookAttempt,
)
from webhooks.selectors import EVENT_COLUMNS, EventFilter, Position
from webhooks.ssrf import MAX_URL_LENGTH, url_parse

DEFAULT_PAGE = 50
MAX_PAGE = 100


class EventDocumentSerializer(serializers.ModelSerializer):
    """Expects the event's message loaded (``select_related``) for its tags and metadata."""

    message_id = serializers.UUIDField(read_only=True)
    tags = serializers.ListField(source="message.tags", read_only=True)
    metadata = serializers.DictField(source="message.metadata", read_only=True)
    test_mode = serializers.BooleanField(
        read_only=True,
        help_text="An event of test-mode mail (sent with a test-mode key, settled by the "
        "simulator, never sent).",
    )

    class Meta:
        model = Event
        fields = [*EVENT_COLUMNS, "tags", "metadata"]
        read_only_fields = fields


class _StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so that a typo is an error rather than ignored."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError(
                    {
                        name: [serializers.ErrorDetail("Unknown field.", code="unknown_field")]
                        for name in unknown
                    }
                )
        return super().to_internal_value(data)


class EventTypesField(serializers.ListField):
    child = serializers.ChoiceField(choices=EVENT_TYPES)

    def __init__(self, **kwargs) -> None:
        super().__init__(allow_empty=False, **kwargs)

    def to_internal_value(self, data) -> list[str]:
        chosen = set(super().to_internal_value(data))
        return [event_type for event_type in EVENT_TYPES if event_type in chosen]


class WebhookInputSerializer(_StrictSerializer):
    # Not trimmed: white space around a URL is refused like white space inside it, never quietly
    # taken away (what is stored is what was sent, and what is requested).
    url = serializers.CharField(max_length=MAX_URL_LENGTH, trim_whitespace=False)
    event_types = EventTypesField(required=False)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)

    def validate_url(self, value: str) -> str:
        # The shape is checked here, as sent; the service checks it again and resolves the host.
        # UnsafeUrl is not a ValidationError: it leaves as the service's own refusal would, a
        # 400 `webhook_url_refused` naming the field.
        url_parse(value, policy=conf.url_policy())
        return value


class WebhookSerializer(serializers.ModelSerializer):
    class Meta:
        model = Endpoint
        fields = [
            "id",
            "url",
            "event_types",
            "description",
            "enabled",
            *DISABLED_FIELDS,
            *HEALTH_FIELDS,
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text="Signs every request to this endpoint. Shown in this answer only: store it.",
    )

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookListSerializer(serializers.Serializer):
    results = WebhookSerializer(many=True)


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = [
            "id",
            "started_at",
            "duration_ms",
            "status_code",
            "succeeded",
            "error",
            "response_excerpt",
            "event_ids",
        ]
        read_only_fields = fields


class EventQuerySerializer(serializers.Serializer):
    """The query string of ``GET /api/v1/events``."""

    mode = ModeField()
    type = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES),
        required=False,
        help_text="Any of these types (repeat the parameter, or separate them with commas).",
    )
    message = serializers.UUIDField(required=False, help_text="Events of this message.")
    recipient = serializers.CharField(
        max_length=254, required=False, help_text="Events of this recipient, any case."
    )
    created_after = serializers.DateTimeField(required=False, help_text="Inclusive.")
    created_before = serializers.DateTimeField(required=False, help_text="Exclusive.")
    order = serializers.ChoiceField(
        choices=["newest", "oldest"],
        default="newest",
        help_text="`oldest` reads forward from a point, e.g. to catch up after an outage.",
    )
    limit = serializers.IntegerField(min_value=1, max_value=MAX_PAGE, default=DEFAULT_PAGE)
    cursor = serializers.CharField(required=False, help_text="From `next`.")

    @classmethod
    def from_query(cls, query_params) -> EventQuerySerializer:
        """``type`` may be repeated or comma-separated: ``?type=bounced,failed``."""
        data = {key: query_params.get(key) for key in query_params if key != "type"}
        types = [t.strip() for value in query_params.getlist("type") for t in value.split(",")]
        if types:
            data["type"] = [t for t in types if t]
        return cls(data=data)

    def to_internal_value(self, data):
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {
                    name: [serializers.ErrorDetail("Unknown parameter.", code="unknown_field")]
                    for name in unknown
                }
            )
        return super().to_internal_value(data)

    def validate_cursor(self, value: str) -> Position:
        try:
            return Position.decode(value)
        except ValueError:
            raise serializers.ValidationError(
                "Not a cursor from this API; follow the `next` link.", code="invalid_cursor"
            ) from None

    def to_filter(self, *, key_test_mode: bool) -> EventFilter:
        data = self.validated_data
        return EventFilter(
            test_mode=test_mode_for(data.get("mode"), key_test_mode=key_test_mode),
            types=tuple(data.get("type", ())),
            message_id=data.get("message"),
            recipient=data.get("recipient", ""),
            created_after=data.get("created_after"),
            created_before=data.get("created_before"),
            oldest_first=data["order"] == "oldest",
        )


class _PageSerializer(serializers.Serializer):
    next = serializers.URLField(
        allow_null=True, help_text="The next page, with every parameter kept; null on the last."
    )


class EventPageSerializer(_PageSerializer):
    results = EventDocumentSerializer(many=True)


class WebhookAttemptPageSerializer(_PageSerializer):
    results = WebhookAttemptSerializer(many=True)


class WebhookAttemptQuerySerializer(serializers.Serializer):
    before = serializers.IntegerField(
        min_value=1, required=False, help_text="From `next`: attempts older than this one."
    )
    limit = serializers.IntegerField(min_value=1, max_value=MAX_PAGE, default=DEFAULT_PAGE)
